"""`make figures` / `awbench figures`: every report figure as PNG (1920x1080, 1280x720) and
SVG, named by notebook and title.

The names are checked on a small report built by hand (two executed notebooks whose outputs
are plotly figures: no kernel needed). The export itself drives a real Chromium through
kaleido (the ``export`` extra): without kaleido or a Chromium it skips locally and fails
under CI (``CI=true``), like tests/test_browser.py.
"""

from __future__ import annotations

import json
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from browser_support import find_chromium, missing

from awbench.apps.report_export import OUTPUTS, report_figures, slugify

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
    _notebook(folder / "05_weight_decay.ipynb", ["Gap against weight decay β", ""])
    return folder


EXPECTED = [
    "04_sgd_batch_and_lr--gap-against-batch-size",
    "04_sgd_batch_and_lr--gap-against-batch-size-2",
    "05_weight_decay--gap-against-weight-decay-beta",
    "05_weight_decay--figure-2",  # untitled: "Figure N" of its notebook
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


def test_unknown_output_refused(small_report, tmp_path):
    pytest.importorskip("kaleido")
    from awbench.apps.report_export import export_figures

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
