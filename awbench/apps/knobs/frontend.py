"""Where notebook 08's knob panel runs: live widgets or static figures (:func:`frontend`),
and the background warm-up that pays the first costs of "train this setting" while the user
looks at a live panel (:func:`wait_for_warm_up` blocks until it is over)."""

from __future__ import annotations

import os

from awbench.config import Config

HEADLESS_PARENTS = (
    "papermill",
    "nbconvert",
    "nbclient",
    "jupyter-execute",
    "jupyter_execute",
    "pytest",
)


def _parent_commands(levels: int = 4) -> list[str]:
    out, pid = [], os.getpid()
    for _ in range(levels):
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                out.append(f.read().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, ValueError, IndexError):
            break
        if pid <= 1:
            break
    return out


def frontend() -> str:
    """ "live" where a Jupyter front end renders widgets, else "static".

    Static: ``AWBENCH_QUIET`` set (headless runs), no IPython kernel, or a kernel started by
    papermill / nbconvert / nbclient. Live: a kernel started by a Jupyter server (JupyterLab,
    Notebook) or any other kernel front end (VS Code, ...). ``AWBENCH_WIDGETS=live|static``
    overrides the guess.
    """
    forced = os.environ.get("AWBENCH_WIDGETS", "").strip().lower()
    if forced in ("live", "static"):
        return forced
    if os.environ.get("AWBENCH_QUIET", "").strip() not in ("", "0"):
        return "static"
    try:
        shell = get_ipython().__class__.__name__  # type: ignore[name-defined]
    except NameError:
        return "static"
    if shell != "ZMQInteractiveShell":
        return "static"
    if os.environ.get("JPY_SESSION_NAME"):
        return "live"
    parents = " ".join(_parent_commands())
    return "static" if any(name in parents for name in HEADLESS_PARENTS) else "live"


def warm_up(cfg: Config) -> None:
    """Pay the first-use costs of "train this setting" (dataset loader imports, torch's
    batched autograd) in a background thread while the user looks at the panel."""
    import threading

    def work() -> None:
        try:
            import torch

            from awbench.curvature.layer import output_hessians
            from awbench.data import load_data
            from awbench.nn.mlp import build_model

            small = cfg.replace(n_train=20, n_test=10, label_noise=0.0)
            data = load_data(small)
            model = build_model(small, data.n_features, data.n_classes).double().eval()
            output_hessians(model, small.layer, data.x_train[:4].double(), data.y_train[:4])
            del torch
        except Exception:  # noqa: BLE001, S110 - only a head start: training works without it
            pass

    global _WARM_THREAD
    if _WARM_THREAD is not None:
        return
    # not a daemon: an interpreter exiting mid-warm-up waits for it (torch aborts otherwise)
    _WARM_THREAD = threading.Thread(target=work, name="awbench-warm-up")
    _WARM_THREAD.start()


_WARM_THREAD = None


def wait_for_warm_up(timeout: float | None = None) -> None:
    """Block until the background warm-up (started by the first live panel) is over."""
    if _WARM_THREAD is not None:
        _WARM_THREAD.join(timeout)
