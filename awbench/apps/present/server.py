"""``awbench present`` as a local server: Voila on 127.0.0.1 that behaves.

:func:`serve` (the ``awbench`` process) checks the port, writes a one-cell notebook, a kernel
spec and a Voila template into a temporary folder, and starts the Voila process
(``python -m awbench.apps.present.server``, :func:`voila_main`) with its settings in the
environment, where other users cannot read them (``ps`` shows command lines):

- a random token in the printed URL, and a Host check: only ``127.0.0.1``/``localhost`` Host
  headers are served (a DNS-rebinding page cannot drive it);
- one kernel per page, at most ``max_kernels`` (default 2, about 450 MB each): a new page
  past the cap shuts down the least recently active kernel, pages without a connection
  first (:class:`CappedKernelManager`); a kernel whose page is closed is shut down after
  ``idle_timeout`` idle seconds (jupyter_server's ``MappingKernelManager.cull_*``);
- the Voila process dies with the ``awbench`` process, also on ``kill -9``: Linux's
  ``PR_SET_PDEATHSIG`` and, everywhere, a thread polling the parent pid (:func:`die_with`);
  Voila's own SIGTERM handler shuts its kernels down, and ipykernel's parent poller ends a
  kernel whose Voila process is gone;
- a busy port is an error naming it (Voila would move to the next port silently);
- the explorer's payload is built (once per grid, then cached) by a process started with
  Voila, so that a first page waits for it for less time, or not at all (:data:`WARM`);
- no jsonschema IRI grammars: jsonschema builds them with lark when ``rfc3987_syntax`` is
  installed (about 2 s of CPU in the Voila process and again in the kernel; nothing here
  validates an IRI), see :data:`FAST_IMPORTS`.

The page's sliders are one Tab stop each: the template makes the value readouts, which
ipywidgets makes editable, plain text (:data:`ONE_TAB_PER_SLIDER`).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import webbrowser
from pathlib import Path
from typing import Any

DEFAULT_PORT = 8866
HOST = "127.0.0.1"
MAX_KERNELS = 2
IDLE_TIMEOUT = 300  # s: a kernel with no page connected for this long is shut down
TEMPLATE = "awbench-present"
KERNEL = "awbench-present"
SETTINGS_ENV = "AWBENCH_PRESENT_SETTINGS"
#: the JupyterLab extensions the page loads: the widget managers (ipywidgets' and Voila's),
#: plotly's FigureWidget and anywidget
EXTENSIONS = (
    "@jupyter-widgets/jupyterlab-manager",
    "@voila-dashboards/widgets-manager7",
    "@voila-dashboards/widgets-manager8",
    "jupyterlab-plotly",
    "anywidget",
)
MODULE = "awbench.apps.present.server"
CELL = """from awbench.apps.present.app import PresentApp

PresentApp().show()"""
#: run beside the Voila process: the payload cached before the page's kernel asks for it (it
#: waits on the cache's lock while this builds); a failure is the kernel's to show
WARM = """from awbench.apps.present.app import PresentApp
try:
    PresentApp()
except Exception:
    pass"""
#: run first in the Voila process and in the kernel (see the module docstring)
FAST_IMPORTS = "import sys; sys.modules.setdefault('rfc3987_syntax', None)"
#: ipywidgets makes a slider's readout editable (a Tab stop where the arrows move a caret);
#: here it is text, so Tab goes from slider handle to slider handle
ONE_TAB_PER_SLIDER = """<script>
new MutationObserver(() => {
  for (const el of document.querySelectorAll(".awbench-knob .widget-readout")) {
    if (el.contentEditable !== "false") el.contentEditable = "false";
  }
}).observe(document.documentElement,
  {subtree: true, childList: true, attributes: true, attributeFilter: ["contenteditable"]});
</script>"""
#: Voila 0.5 bundles JupyterLab 4.2; the widget extensions ask for ^4.5 and run on what it
#: provides after one console warning per shared module, which nobody can act on
QUIET_CONSOLE = """<script>
(() => {
  const warn = console.warn.bind(console);
  const versions = /^(Unsatisfied version|No satisfying version|\\[ Federation Runtime \\] Version)/;
  console.warn = (...args) => { if (!versions.test(String(args[0]))) warn(...args); };
})();
</script>"""


# --- the awbench process ----------------------------------------------------------------------


def check_port(port: Any) -> int:
    """``port`` as an int from 1 to 65535, else a ValueError naming it."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"--port must be a whole number from 1 to 65535, got {port!r}")
    return port


def bind_check(port: int) -> None:
    """An OSError naming ``port`` when it cannot be bound on 127.0.0.1."""
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError as exc:
            why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc})"
            raise OSError(
                exc.errno,
                f"port {port} on {HOST} {why}: stop what uses it or pick another with --port",
            ) from None


def free_port(preferred: int = DEFAULT_PORT) -> int:
    """``preferred`` when it is free on 127.0.0.1, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port on 127.0.0.1")


def notebook() -> dict:
    """The one-cell notebook Voila runs (its kernel is this Python, see :func:`prepare`)."""
    cell = {"cell_type": "code", "id": "awbench-present", "metadata": {}, "source": CELL}
    return {
        "cells": [{**cell, "outputs": [], "execution_count": None}],
        "metadata": {
            "kernelspec": {"name": KERNEL, "display_name": "awbench present", "language": "python"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def template_text() -> str:
    """Voila's lab template without the stylesheets it takes from a CDN (Font Awesome),
    with no Mermaid loader (nothing on the page comes from outside 127.0.0.1), and with
    :data:`QUIET_CONSOLE` and :data:`ONE_TAB_PER_SLIDER` in the head."""
    import jupyter_core.paths

    for folder in jupyter_core.paths.jupyter_path("voila", "templates", "lab"):
        path = Path(folder) / "index.html.j2"
        if path.exists():
            break
    else:
        raise FileNotFoundError("Voila's lab template (voila/templates/lab/index.html.j2)")
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if "://cdn" not in line]
    head, rest = kept[0], kept[1:]
    block = "html_head_js_mermaidjs"  # the head block that would load Mermaid
    ours = f"{{%- block {block} -%}}{QUIET_CONSOLE}{ONE_TAB_PER_SLIDER}{{%- endblock {block} -%}}"
    return "\n".join([head, ours, *rest]) + "\n"


def prepare(folder: Path) -> Path:
    """Write the notebook, the kernel spec and the template under ``folder``; returns the
    notebook path (``folder/share/jupyter`` goes first on ``JUPYTER_PATH``)."""
    share = folder / "share" / "jupyter"
    kernel = share / "kernels" / KERNEL
    kernel.mkdir(parents=True, exist_ok=True)
    boot = f"{FAST_IMPORTS}; from ipykernel.kernelapp import launch_new_instance as m; m()"
    spec = {
        "argv": [sys.executable, "-c", boot, "-f", "{connection_file}"],
        "display_name": "awbench present",
        "language": "python",
    }
    (kernel / "kernel.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
    template = share / "voila" / "templates" / TEMPLATE
    template.mkdir(parents=True, exist_ok=True)
    (template / "conf.json").write_text(json.dumps({"base_template": "lab"}), encoding="utf-8")
    (template / "index.html.j2").write_text(template_text(), encoding="utf-8")
    path = folder / "awbench-present.ipynb"
    path.write_text(json.dumps(notebook(), indent=1), encoding="utf-8")
    return path


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def serve(
    port: int | None = None,
    open_browser: bool = True,
    *,
    max_kernels: int = MAX_KERNELS,
    idle_timeout: float = IDLE_TIMEOUT,
) -> int:
    """Run the present-mode app with Voila on 127.0.0.1 until Ctrl-C; returns Voila's code.

    ``port`` None takes 8866 when it is free, else any free port; a given port must be free.
    """
    if port is not None:
        bind_check(check_port(port))
    if int(max_kernels) < 1:
        raise ValueError(f"--max-kernels must be at least 1, got {max_kernels!r}")
    if not float(idle_timeout) > 0:
        raise ValueError(
            f"--idle-timeout must be a positive number of seconds, got {idle_timeout!r}"
        )
    try:
        import voila  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "awbench present needs Voila: pip install 'awbench[present]' (or: make present)"
        ) from exc
    port = free_port() if port is None else port
    token = secrets.token_urlsafe(24)
    url = f"http://{HOST}:{port}/?token={token}"
    settings = {
        "port": port,
        "token": token,
        "parent": os.getpid(),
        "max_kernels": int(max_kernels),
        "idle_timeout": float(idle_timeout),
    }
    with tempfile.TemporaryDirectory(prefix="awbench-present-", ignore_cleanup_errors=True) as tmp:
        path = prepare(Path(tmp))
        env = dict(os.environ)
        share = str(Path(tmp) / "share" / "jupyter")
        env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [share, env.get("JUPYTER_PATH")]))
        env.pop("AWBENCH_QUIET", None)
        env[SETTINGS_ENV] = json.dumps({**settings, "folder": tmp})
        cmd = [sys.executable, "-m", MODULE, str(path)]
        print(f"awbench present: {url}  (Ctrl-C to stop)", flush=True)
        warm = subprocess.Popen(
            [sys.executable, "-c", WARM], env=env, cwd=tmp, stdout=subprocess.DEVNULL
        )
        proc = subprocess.Popen(cmd, env=env, cwd=tmp)
        try:
            return _run(proc, port, url, open_browser)
        except KeyboardInterrupt:
            return 0
        finally:
            _stop(warm)
            _stop(proc)


def _run(proc: subprocess.Popen, port: int, url: str, open_browser: bool) -> int:
    """Wait for Voila to listen (then open the browser), then until it ends."""
    while not _listening(port):
        if proc.poll() is not None:
            raise OSError(
                errno.EADDRINUSE,
                f"the server did not start on {HOST}:{port} (exit code {proc.returncode}, its "
                "log is above); if the port was taken meanwhile, pick another with --port",
            )
        time.sleep(0.1)
    if open_browser:
        webbrowser.open(url)
    return proc.wait()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


# --- the Voila process --------------------------------------------------------------------------


def die_with(parent: int, poll: float = 0.5, grace: float = 10.0) -> None:
    """End this process when ``parent`` ends, also on ``kill -9``: SIGTERM (Voila stops its
    kernels), then, ``grace`` seconds later, exit. Linux sends the SIGTERM itself
    (``PR_SET_PDEATHSIG``); a daemon thread polling the parent pid does it elsewhere."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace)
        os._exit(1)

    threading.Thread(target=watch, name="awbench-parent-watch", daemon=True).start()


def voila_config(settings: dict) -> Any:
    """The traitlets config of the Voila process (see the module docstring)."""
    from traitlets.config import Config

    c = Config()
    c.Voila.ip = HOST
    c.Voila.port = settings["port"]
    c.Voila.port_retries = 0  # a busy port is an error, never another port
    c.Voila.open_browser = False  # serve() opens it once the server listens
    c.Voila.token = settings["token"]
    c.Voila.log_level = "WARN"  # serve() prints the URL; Voila's would hide the token
    c.Voila.tornado_settings = {
        "allow_remote_access": False,  # the Host check (jupyter_server's check_host)
        "local_hostnames": ["localhost"],
    }
    c.VoilaConfiguration.template = TEMPLATE
    c.VoilaConfiguration.theme = "light"
    c.VoilaConfiguration.strip_sources = True
    c.VoilaConfiguration.show_tracebacks = False
    # the page loads only the front-end extensions it uses: the others (jupytext's, built
    # for a newer JupyterLab than Voila's) fill the console with warnings and an error
    c.VoilaConfiguration.extension_allowlist = list(EXTENSIONS)
    c.VoilaConfiguration.multi_kernel_manager_class = f"{MODULE}.CappedKernelManager"
    c.CappedKernelManager.max_kernels = settings["max_kernels"]
    idle = settings["idle_timeout"]
    c.MappingKernelManager.cull_idle_timeout = max(1, round(idle))
    c.MappingKernelManager.cull_interval = max(1, min(30, round(idle / 2)))
    c.MappingKernelManager.cull_connected = False  # an open page keeps its kernel
    if os.name == "posix":  # kernel sockets as files only this user can open (and no warning)
        c.KernelManager.transport = "ipc"
    return c


def voila_main(argv: list[str]) -> None:
    """Entry point of the Voila process: ``python -m awbench.apps.present.server NOTEBOOK``."""
    sys.modules.setdefault("rfc3987_syntax", None)  # as FAST_IMPORTS does in the kernel
    settings = json.loads(os.environ.pop(SETTINGS_ENV))
    die_with(settings["parent"])
    from voila.app import Voila

    app = Voila.instance(config=voila_config(settings))
    app.initialize(argv)
    for where in (app.log, *app.log.handlers, logging.getLogger("tornado.general")):
        where.addFilter(_quiet)
    try:
        app.start()
    finally:  # the awbench process cannot clean up after a kill -9
        shutil.rmtree(settings["folder"], ignore_errors=True)


def _quiet(record: Any) -> bool:
    """Drop the warnings a user cannot act on: the generated notebook is 'not trusted' (trust
    is about outputs saved in a notebook; this one has none), and a closed page's kernel was
    shut down (what ``--idle-timeout`` asks for), and tornado's note that jupyter_server's
    websocket ping timeout (in ms, which tornado reads as seconds) exceeds the interval; say
    what a refused Host means here."""
    msg = str(record.msg)
    if msg.startswith("Blocking request with non-local 'Host'"):
        record.msg = (
            "awbench present: refused a request for Host %r: only 127.0.0.1 and localhost are "
            "served (a web page may have tried to reach this server)"
        )
        record.args = record.args[:1]
    noise = ("Culling '", "The websocket_ping_timeout")
    return msg != "Notebook %s is not trusted" and not msg.startswith(noise)


def __getattr__(name: str) -> Any:
    """:class:`CappedKernelManager`, built on first use: it imports jupyter_server, which the
    ``awbench`` process does not need."""
    if name == "CappedKernelManager":
        globals()[name] = cls = _capped_kernel_manager()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _capped_kernel_manager() -> type:
    import asyncio

    from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
    from traitlets import Integer

    class CappedKernelManager(AsyncMappingKernelManager):
        """At most ``max_kernels`` kernels: starting one more first shuts down the least
        recently active kernel, one without a page connected if there is one."""

        max_kernels = Integer(MAX_KERNELS, config=True, help="most kernels alive at once")

        async def start_kernel(self, **kwargs: Any) -> str:
            if not hasattr(self, "_cap_lock"):
                self._cap_lock = asyncio.Lock()
            async with self._cap_lock:
                while len(self.list_kernel_ids()) >= max(1, self.max_kernels):
                    await self.shutdown_kernel(self._least_needed())
                return await super().start_kernel(**kwargs)

        def _least_needed(self) -> str:
            """A kernel without a page connected if there is one, the least recently
            active first. (A kernel still rendering its page has none either: closing one
            stops that page with an error in the log.)"""

            def key(kid: str) -> tuple:
                connected = self._kernel_connections.get(kid, 0) > 0
                return connected, self.get_kernel(kid).last_activity

            self.log.warning(
                "awbench present: %d pages at most (--max-kernels): the least recently used "
                "one stops answering",
                self.max_kernels,
            )
            return min(self.list_kernel_ids(), key=key)

    return CappedKernelManager


if __name__ == "__main__":  # pragma: no cover - the Voila process
    voila_main(sys.argv[1:])
