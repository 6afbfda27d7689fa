"""`make figures` / `awbench figures`: every report figure as PNG (1920x1080, 1280x720) and
SVG, named by notebook and title.

The names are checked on a small report built by hand (two executed notebooks whose outputs
are plotly figures: no kernel needed). The export itself drives a real Chromium through
kaleido (the ``export`` extra): without kaleido or a Chromium it skips locally and fails
under CI (``CI=true``), like tests/test_browser.py.
"""

from __future__ import annotations

import json
import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from browser_support import find_chromium, missing

from awbench.apps.report.export import (
    OUTPUTS,
    SLIDE_FONT,
    report_figures,
    slide_ready,
    slugify,
)

PLOTLY_MIME = "application/vnd.plotly.v1+json"


def _figure(title: str, n: int = 5) -> dict:
    return {
        "data": [{"type": "scatter", "x": list(range(n)), "y": [i * i for i in range(n)]}],
        "layout": {"title": {"text": title}, "height": 420},
    }


def _notebook(path: Path, titles: list[str]) -> None:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": f"# {path.stem}"}]
    for i, title in enumerate(titles):
        cells.append(
            {
                "cell_type": "code",
                "execution_count": i + 1,
                "metadata": {},
                "source": "fig.show()",
                "outputs": [
                    {
                        "output_type": "display_data",
                        "metadata": {},
                        "data": {PLOTLY_MIME: _figure(title), "text/plain": ["Figure()"]},
                    }
                ],
            }
        )
    nb = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb), encoding="utf-8")


@pytest.fixture
def small_report(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(
        folder / "04_sgd_batch_and_lr.ipynb",
        [
            "Gap against batch size (mean ± 95 % CI over 5 converged seeds)",
            "<b>Gap against batch size</b>",  # the same title: a unique name all the same
        ],
    )
    _notebook(
        folder / "05_weight_decay.ipynb",
        [
            "Gap against weight decay β",
            "",
            "Loss along dual-weight directions<br><sup>dashed</sup>",
        ],
    )
    return folder


EXPECTED = [
    "04_sgd_batch_and_lr--gap-against-batch-size",
    "04_sgd_batch_and_lr--gap-against-batch-size-2",
    "05_weight_decay--gap-against-weight-decay-beta",
    "05_weight_decay--figure-2",  # untitled: "Figure N" of its notebook
    "05_weight_decay--loss-along-dual-weight-directions",  # the subtitle apart, not glued on
]


def test_slugify():
    assert slugify("Gap against batch size B (mean ± 95 % CI over 5 seeds)") == (
        "gap-against-batch-size-b"
    )
    assert slugify("Gap against learning rate α") == "gap-against-learning-rate-alpha"
    assert slugify("Sharpness  Σσg² = 1.42 (default 1.42) · λmax") == "sharpness"
    assert slugify("The general family: every member exact") == "the-general-family"
    assert slugify("<b>Sharpness against size</b>: two co-determinants") == (
        "sharpness-against-size"
    )
    assert slugify("Estimated against actual gap, every run") == "estimated-against-actual-gap"
    assert slugify("") == ""


def test_names_are_unique_and_by_notebook_and_title(small_report):
    names = [name for name, _ in report_figures(small_report, explore=False)]
    assert names == EXPECTED
    for name, fig in report_figures(small_report, explore=False):
        assert fig["data"][0]["type"] == "scatter"


def test_no_notebooks_says_what_to_run_first(tmp_path, capsys):
    from awbench.apps.cli import main

    for folder in (tmp_path / "absent", tmp_path):  # no folder; a folder without notebooks
        assert main(["figures", "--notebooks", str(folder), "--out", str(tmp_path / "f")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "run `make reproduce`" in err, err


def _sizes(fig: dict) -> dict[str, float]:
    """Every font size a slide shows that plotly would otherwise take from its 12 px default."""
    layout = fig["layout"]
    out = {"legend": layout["legend"]["font"]["size"], "title": layout["title"]["font"]["size"]}
    for key, axis in layout.items():
        if key.startswith(("xaxis", "yaxis")):
            out[f"{key} ticks"] = axis["tickfont"]["size"]
            out[f"{key} title"] = axis["title"]["font"]["size"]
    for i, note in enumerate(layout.get("annotations", [])):
        out[f"annotation {i}"] = note["font"]["size"]
    for i, trace in enumerate(fig["data"]):
        if "textfont" in trace:
            out[f"trace {i} text"] = trace["textfont"]["size"]
        if "colorbar" in trace.get("marker", {}):
            out[f"trace {i} colour bar"] = trace["marker"]["colorbar"]["tickfont"]["size"]
    return out


def test_slide_ready_sizes_every_text_for_a_slide():
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=["left", "right"])
    fig.add_scatter(x=[1, 2], y=[1, 2], mode="markers+text", text=["B = 8", "B = 32"], row=1, col=1)
    fig.add_scatter(
        x=[1, 2],
        y=[2, 1],
        marker={"color": [1, 2], "colorbar": {"tickfont": {"size": 9}}},
        row=1,
        col=2,
    )
    fig.update_layout(
        title="Loss along dual-weight directions<br><sup>dashed: the ½λt² model</sup>",
        legend={"orientation": "h", "y": 1.02, "font": {"size": 11}},
        annotations=[*fig.layout.annotations, {"text": "note", "font": {"size": 30}}],
    )
    fig.update_xaxes(tickfont={"size": 10}, title_text="size")
    original = fig.to_plotly_json()
    slide = slide_ready(original)
    sizes = _sizes(slide)
    assert {"xaxis2 ticks", "annotation 1", "trace 0 text", "trace 1 colour bar"} <= set(sizes)
    assert min(sizes.values()) >= SLIDE_FONT, sizes
    assert sizes["annotation 2"] == 30  # larger text stays as large
    title = slide["layout"]["title"]
    assert title["text"] == "Loss along dual-weight directions"
    assert title["subtitle"] == {"text": "dashed: the ½λt² model", "font": {"size": SLIDE_FONT}}
    assert slide["layout"]["legend"]["y"] == 0  # a legend above the plot goes under it
    assert original["layout"]["xaxis"]["tickfont"] == {"size": 10}  # a copy: the report's stays


def test_unknown_output_refused(small_report, tmp_path):
    pytest.importorskip("kaleido")
    from awbench.apps.report.export import export_figures

    with pytest.raises(ValueError, match="unknown figure outputs"):
        export_figures(small_report, tmp_path / "out", outputs=["4k"])


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", path
    return struct.unpack(">II", head[16:24])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_figures_command_writes_every_figure_at_slide_sizes(small_report, tmp_path, monkeypatch):
    try:
        import kaleido  # noqa: F401
    except ImportError:
        missing("kaleido (pip install 'awbench[export]')")
    chromium = find_chromium()
    if chromium is None:
        missing("a Chromium (apt-get install chromium)")
    monkeypatch.setenv("BROWSER_PATH", chromium)
    from awbench.apps.cli import main

    out = tmp_path / "figures"
    (out / "svg").mkdir(parents=True)
    (out / "svg" / "stale--old-name.svg").write_text("<svg/>")  # an earlier export's file
    assert main(["figures", "--notebooks", str(small_report), "--out", str(out), "-q"]) == 0

    names = [name for name, _ in report_figures(small_report)]  # with the knob-grid figures
    assert names[: len(EXPECTED)] == EXPECTED
    sizes = {"1920x1080": (1920, 1080), "1280x720": (1280, 720)}
    for sub, (fmt, _) in OUTPUTS.items():
        files = sorted(p.name for p in (out / sub).iterdir())
        assert files == sorted(f"{name}.{fmt}" for name in names), sub
        for name in names:
            path = out / sub / f"{name}.{fmt}"
            if fmt == "png":
                assert _png_size(path) == sizes[sub], path
            else:
                root = ET.parse(path).getroot()
                assert root.tag.endswith("svg"), path
                assert float(root.get("width")) == 1280 and float(root.get("height")) == 720
                text = path.read_text()
                sizes = [float(s) for s in re.findall(r"<text[^>]*font-size: ?([\d.]+)px", text)]
                assert sizes and min(sizes) >= SLIDE_FONT, (path, sorted(set(sizes)))
