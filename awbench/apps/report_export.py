"""`make figures`: every report figure as slide-ready PNG (1920x1080, 1280x720) and SVG.

    from awbench.apps.report_export import export_figures
    export_figures("outputs/notebooks", "outputs/figures")

writes ``outputs/figures/1920x1080/NAME.png``, ``outputs/figures/1280x720/NAME.png`` and
``outputs/figures/svg/NAME.svg`` for every figure of the report (each notebook's figures and
the report's summary figures), ``NAME`` being the notebook and the figure's title, e.g.
``04_sgd_batch_and_lr--gap-against-batch-size-b``. Every figure is laid out at 1280x720 (a
16:9 slide); the 1920x1080 PNG is the same layout at 1.5x scale, so its text is as
readable from the back of a room as on the smaller one, and the 1280x720 PNG is that image
scaled down (Pillow; rendered again without it).

One kaleido browser (``pip install 'awbench[export]'``, kaleido >= 1, which drives an
installed Chrome or Chromium: set ``BROWSER_PATH=/usr/bin/chromium`` if it does not find
yours) renders every figure, with MathJax off and the plotly.js of the installed plotly, so
that nothing is fetched from the network.
"""

from __future__ import annotations

import asyncio
import os
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from awbench.apps.report_pages import notebook_paths, read_notebook
from awbench.progress import progress

SLIDE = (1280, 720)
#: subfolder -> (format, scale of the 1280x720 layout)
OUTPUTS = {"1920x1080": ("png", 1.5), "1280x720": ("png", 1.0), "svg": ("svg", 1.0)}
_WORDS = 8  # the most words of a title a file name keeps


def slugify(title: str, words: int = _WORDS) -> str:
    """A file-name slug of a figure title: its words outside parentheses and before the first
    ``,``, ``:``, ``·``, ``=`` or double space (where titles start their numbers), in
    lower-case ASCII (Greek letters by name), joined by ``-``."""
    text = re.sub(r"<[^>]+>", " ", title)
    text = re.sub(r"\([^)]*\)?", " ", text)
    text = re.split(r"[,:;·|]| — | = |\s\s", text.strip())[0]
    out = []
    for ch in unicodedata.normalize("NFKD", text):
        if ch.isascii():
            out.append(ch.lower())
        elif unicodedata.name(ch, "").startswith("GREEK"):
            out.append(f" {unicodedata.name(ch).split()[-1].lower()} ")
        else:
            out.append(" ")
    parts = re.findall(r"[a-z0-9]+", "".join(out))
    return "-".join(parts[:words])


def report_figures(notebook_dir: str | os.PathLike, explore: bool = True) -> list[tuple[str, dict]]:
    """``(NAME, figure dict)`` of every figure in the report of the executed notebooks in
    ``notebook_dir``, in report order: each notebook's, the summary figures and (with
    ``explore``) the knob-grid section's at its default setting. Names are unique."""
    from awbench.apps.report_knobs import summary_figures

    pages = [read_notebook(p) for p in notebook_paths(notebook_dir)]
    named: list[tuple[str, str, dict]] = [
        (p.stem, b.title, b.content) for p in pages for b in p.blocks if b.kind == "figure"
    ]
    named += [("report", title, fig) for _, title, fig in summary_figures(pages)]
    if explore:
        named += [("report", title, fig) for title, fig in _explore_figures()]
    out, seen = [], set()
    for n, (prefix, title, fig) in enumerate(named, 1):
        base = f"{prefix}--{slugify(title) or f'figure-{n}'}"
        name, k = base, 1
        while name in seen:
            k += 1
            name = f"{base}-{k}"
        seen.add(name)
        out.append((name, fig))
    return out


def _title(fig: dict) -> str:
    title = (fig.get("layout") or {}).get("title") or ""
    return str(title.get("text", "") if isinstance(title, dict) else title)


def _explore_figures() -> list[tuple[str, dict]]:
    """(title, figure) of the report's knob-grid figures (plane, spectra) at the default
    setting, or none (with a line saying why) when the shipped grid cannot be read."""
    try:
        from awbench.apps.knob_grid import KnobGrid
        from awbench.apps.report_sliders import grid_payload, plane_figure, spectra_figure

        grid = KnobGrid()
        payload, runs = grid_payload(grid)
        figs = [plane_figure(payload, runs), spectra_figure(grid, payload, runs)]
        return [
            (_title(fig) or f"knob grid {what}", fig)
            for what, fig in zip(("plane", "spectra"), figs)
        ]
    except Exception as exc:  # noqa: BLE001 - as the report, which leaves the section out
        print(f"[figures] the knob-grid figures are left out: {exc}", flush=True)
        return []


def export_figures(
    notebook_dir: str | os.PathLike = "outputs/notebooks",
    dest: str | os.PathLike = "outputs/figures",
    outputs: Iterable[str] = tuple(OUTPUTS),
    progress_bar: bool | None = None,
    workers: int | None = None,
    explore: bool = True,
) -> list[Path]:
    """Write every report figure of the executed notebooks in ``notebook_dir`` into
    ``dest/<output>/NAME.<format>`` for each of ``outputs`` (keys of :data:`OUTPUTS`) and
    return the paths. Files of an earlier export in those folders are removed first.

    ``workers``: browser tabs rendering at once (default: up to 4, one per core);
    ``explore``: with the knob-grid section's figures (they do not depend on the notebooks).
    Raises
    ImportError without kaleido, RuntimeError (after writing the rest) if a figure failed.
    """
    try:
        import kaleido  # noqa: F401
    except ImportError:
        raise ImportError(
            "exporting figures needs kaleido: pip install 'awbench[export]'"
        ) from None
    outputs = list(outputs)
    unknown = [o for o in outputs if o not in OUTPUTS]
    if unknown:
        raise ValueError(f"unknown figure outputs {unknown}: expected some of {list(OUTPUTS)}")
    figures = report_figures(notebook_dir, explore)
    dest = Path(dest)
    for sub in outputs:
        folder = dest / sub
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob(f"*.{OUTPUTS[sub][0]}"):
            old.unlink()
    jobs = _jobs(figures, dest, outputs)
    print(
        f"[figures] {len(figures)} figures x {len(outputs)} outputs ({', '.join(outputs)}) "
        f"-> {dest}",
        flush=True,
    )
    errors = _run(_render_all(jobs, workers or min(4, _cores()), progress_bar))
    if errors:
        raise RuntimeError(
            f"{len(errors)} of {len(jobs)} figures failed: "
            + "; ".join(f"{path.name}: {err}" for path, err in errors[:5])
        )
    return [dest / sub / f"{name}.{OUTPUTS[sub][0]}" for name, _ in figures for sub in outputs]


#: (path, figure, format, scale, smaller copies: (path, width, height) made from the PNG)
Job = tuple[Path, dict, str, float, list[tuple[Path, int, int]]]


def _jobs(figures: list[tuple[str, dict]], dest: Path, outputs: list[str]) -> list[Job]:
    """What to render: each figure once per output, except that the 1280x720 PNG is the
    1920x1080 one scaled down (one render fewer per figure) when both are wanted and
    Pillow is installed."""
    try:
        import PIL.Image  # noqa: F401

        derive = "1920x1080" in outputs and "1280x720" in outputs
    except ImportError:
        derive = False
    jobs: list[Job] = []
    for name, fig in figures:
        for sub in outputs:
            if derive and sub == "1280x720":
                continue
            fmt, scale = OUTPUTS[sub]
            copies = (
                [(dest / "1280x720" / f"{name}.png", *SLIDE)]
                if derive and sub == "1920x1080"
                else []
            )
            jobs.append((dest / sub / f"{name}.{fmt}", fig, fmt, scale, copies))
    return jobs


def _shrink(path: Path, copies: list[tuple[Path, int, int]]) -> None:
    from PIL import Image

    with Image.open(path) as image:
        for target, width, height in copies:
            image.resize((width, height), Image.Resampling.LANCZOS).save(target)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def _run(coro):
    """Run ``coro`` to its end, also from a thread with a running loop (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _render_all(
    jobs: list[Job], workers: int, progress_bar: bool | None
) -> list[tuple[Path, str]]:
    """Render ``jobs`` in one browser with ``workers`` tabs; return the (path, error) of
    those that failed."""
    import kaleido
    from choreographer.errors import ChromeNotFoundError

    width, height = SLIDE
    try:
        browser = kaleido.Kaleido(n=workers, mathjax=False)
    except ChromeNotFoundError as exc:
        raise RuntimeError(
            f"{exc} On Debian: apt-get install chromium, then BROWSER_PATH=/usr/bin/chromium"
        ) from None

    async def one(path: Path, fig: dict, fmt: str, scale: float, copies: list) -> tuple:
        opts = {"format": fmt, "width": width, "height": height, "scale": scale}
        try:
            await browser.write_fig_from_object(
                {"fig": fig, "path": path, "opts": opts}, cancel_on_error=True
            )
            if copies:
                await asyncio.to_thread(_shrink, path, copies)
        except Exception as exc:  # noqa: BLE001 (one bad figure must not stop the others)
            return path, f"{type(exc).__name__}: {exc}"
        return path, ""

    errors = []
    async with browser:
        tasks = [asyncio.ensure_future(one(*job)) for job in jobs]
        for done in progress(
            asyncio.as_completed(tasks), total=len(tasks), desc="figures", enabled=progress_bar
        ):
            path, error = await done
            if error:
                errors.append((path, error))
    return errors
