"""`make figures`: every report figure as slide-ready PNG (1920x1080, 1280x720) and SVG.

    from awbench.apps.report.export import export_figures
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
import copy
import logging
import os
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from awbench.apps.report.html import figure_title, plain_title
from awbench.apps.report.pages import notebook_paths, read_notebook
from awbench.progress import progress

LOG = logging.getLogger(__name__)

SLIDE = (1280, 720)
#: subfolder -> (format, scale of the 1280x720 layout)
OUTPUTS = {"1920x1080": ("png", 1.5), "1280x720": ("png", 1.0), "svg": ("svg", 1.0)}
_WORDS = 8  # the most words of a title a file name keeps
#: font sizes (px) on a 1280x720 slide: ticks, axis titles, legends and annotations; titles
#: (a long title smaller, down to SLIDE_FONT, so that it fits the slide's width)
SLIDE_FONT, SLIDE_TITLE = 18, 24
#: a legend beside the plot with a longer entry goes under it on a slide
_LONG_LEGEND = 40
_AXIS = re.compile(r"^(?:[xy]axis|coloraxis|polar|ternary)\d*$")


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
    ``explore``) the knob-grid section's at its default setting. Names are unique.
    Raises FileNotFoundError (saying what to run) when there are no executed notebooks."""
    from awbench.apps.report.knobs import summary_figures

    folder = Path(notebook_dir)
    paths = notebook_paths(folder) if folder.is_dir() else []
    if not paths:
        raise FileNotFoundError(
            f"no executed notebooks in {folder}: run `make reproduce` (awbench reproduce) first"
        )
    pages = [read_notebook(p) for p in paths]
    named: list[tuple[str, str, dict]] = [
        (p.stem, figure_title(b.content) or b.title, b.content)
        for p in pages
        for b in p.blocks
        if b.kind == "figure"
    ]
    named += [("report", plain_title(title), fig) for _, title, fig in summary_figures(pages)]
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


def _explore_figures() -> list[tuple[str, dict]]:
    """(title, figure) of the report's knob-grid figures (plane, spectra) at the default
    setting, or none (with a line saying why) when the shipped grid cannot be read."""
    try:
        from awbench.apps.knobs.grid import KnobGrid
        from awbench.apps.report.sliders import grid_payload, plane_figure, spectra_figure

        grid = KnobGrid()
        payload, runs = grid_payload(grid)
        figs = [plane_figure(payload, runs), spectra_figure(grid, payload, runs)]
        return [
            (figure_title(fig) or f"knob grid {what}", fig)
            for what, fig in zip(("plane", "spectra"), figs)
        ]
    except Exception as exc:  # noqa: BLE001 - as the report, which leaves the section out
        LOG.warning(f"[figures] the knob-grid figures are left out: {exc}")
        return []


def slide_ready(fig: dict) -> dict:
    """A copy of ``fig`` laid out for a 1280x720 slide: ticks, axis and colour-bar titles,
    legends, annotations and point labels at :data:`SLIDE_FONT` px or more, the title at
    :data:`SLIDE_TITLE` with its ``<br>`` subtitle as plotly's subtitle (at SLIDE_FONT), and a
    legend with long entries moved under the plot."""
    fig = copy.deepcopy(fig)
    layout = fig.setdefault("layout", {})
    _at_least(layout, "font", SLIDE_FONT)
    _slide_title(layout)
    for key, axis in list(layout.items()):
        if _AXIS.match(key) and isinstance(axis, dict):
            _slide_axis(axis)
            if key[1:5] == "axis":  # a log axis's 2s and 5s are drawn at 3/4 size: no labels
                axis.setdefault("minorloglabels", "none")
    legend = layout.setdefault("legend", {})
    _at_least(legend, "font", SLIDE_FONT)
    _at_least(legend.setdefault("title", {}), "font", SLIDE_FONT)
    # under the plot: a legend beside it with long entries would squeeze it to a strip, and
    # one above it would touch the larger title
    if (_legend_beside(legend) and _longest_name(fig) > _LONG_LEGEND) or _legend_above(legend):
        legend.update(orientation="h", x=0, xanchor="left", xref="paper")
        legend.update(y=0, yanchor="bottom", yref="container")
    for note in layout.get("annotations") or []:
        _at_least(note, "font", SLIDE_FONT)
    for trace in fig.get("data") or []:
        if "text" in str(trace.get("mode", "")) or trace.get("type") in ("bar", "heatmap"):
            _at_least(trace, "textfont", SLIDE_FONT)
        colorbar = (trace.get("marker") or {}).get("colorbar") or trace.get("colorbar")
        if isinstance(colorbar, dict):
            _slide_axis(colorbar)
    return fig


def _at_least(parent: dict, key: str, size: float) -> None:
    """``parent[key]["size"]`` raised to ``size`` (a list of sizes each, as in textfont)."""
    font = parent.get(key)
    if not isinstance(font, dict):
        font = parent[key] = {}
    old = font.get("size")
    if isinstance(old, (list, tuple)):
        font["size"] = [max(v or 0, size) for v in old]
    else:
        font["size"] = max(old or 0, size)


def _slide_axis(axis: dict) -> None:
    """An axis (or colour bar, or a polar/ternary's axes) with slide-sized ticks and title."""
    _at_least(axis, "tickfont", SLIDE_FONT)
    title = axis.get("title")
    if isinstance(title, str):
        title = axis["title"] = {"text": title}
    _at_least(axis.setdefault("title", title or {}), "font", SLIDE_FONT)
    if isinstance(axis.get("colorbar"), dict):
        _slide_axis(axis["colorbar"])
    for sub in ("radialaxis", "angularaxis", "aaxis", "baxis", "caxis"):
        if isinstance(axis.get(sub), dict):
            _slide_axis(axis[sub])


def _slide_title(layout: dict) -> None:
    title = layout.get("title")
    if not isinstance(title, dict):
        title = layout["title"] = {"text": str(title or "")}
    head, *rest = re.split(r"<br\s*/?>", title.get("text") or "", maxsplit=1)
    rest = re.sub(r"</?sup>", "", rest[0]).strip() if rest else ""
    # about 0.55 em per character of a sans-serif title: fit it in the slide's width
    fits = int(0.95 * SLIDE[0] / (0.55 * max(len(plain_title(head)), 1)))
    _at_least(title, "font", max(SLIDE_FONT, min(SLIDE_TITLE, fits)))
    if rest:
        title["text"] = head
        subtitle = title.setdefault("subtitle", {})
        subtitle["text"] = rest
        _at_least(subtitle, "font", SLIDE_FONT)
        margin = layout.setdefault("margin", {})
        margin["t"] = max(margin.get("t") or 0, 120)


def _legend_beside(legend: dict) -> bool:
    return legend.get("orientation", "v") == "v" and (legend.get("x") or 1.02) >= 1


def _legend_above(legend: dict) -> bool:
    return legend.get("orientation") == "h" and (legend.get("y") or 0) >= 1


def _longest_name(fig: dict) -> int:
    return max(
        (len(str(t.get("name") or "")) for t in fig.get("data") or [] if t.get("showlegend", True)),
        default=0,
    )


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
    figures = [(name, slide_ready(fig)) for name, fig in report_figures(notebook_dir, explore)]
    dest = Path(dest)
    for sub in outputs:
        folder = dest / sub
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob(f"*.{OUTPUTS[sub][0]}"):
            old.unlink()
    jobs = _jobs(figures, dest, outputs)
    LOG.info(
        f"[figures] {len(figures)} figures x {len(outputs)} outputs ({', '.join(outputs)}) "
        f"-> {dest}"
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
