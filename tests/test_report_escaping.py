"""Everything computed renders as text in the report (issue 22, item 6: stored XSS).

A hostile value (a backtick, an img tag with onerror, a ``</script>`` and a script) is put
everywhere a run can put a value: notebook names and titles, parameters, figure titles,
takeaways, tables, records, timings, failures and error messages. The report is parsed and
must hold no live markup of it: no ``<img>``, no ``on*`` attribute, no script but the
report's own (plotly.js, the figures' and the knob explorer's). The fast test renders pages
built by hand; the slow ones run notebook 01 (smoke) with the value in its ``overrides``
parameter through ``awbench notebooks run`` and through ``reproduce(..., notebooks=[...])``.
"""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from awbench.apps.report import pages as report_pages
from awbench.apps.report.build import build_report, default_notebook_dir, reproduce
from awbench.apps.report.render import render

HOSTILE = "x`<img src=x onerror=alert(1)></script><script>alert(2)</script>"
SHOWN = "&lt;img src=x onerror=alert(1)&gt;"  # how the value must read in the HTML


class _Live(HTMLParser):
    """Collects the markup a browser would act on: img tags, on* attributes, scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.found.append(f"<img {attrs}>")
        self.found += [f"<{tag} {k}=...>" for k, _ in attrs if k.lower().startswith("on")]
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def live_markup(page: str) -> list[str]:
    """The hostile markup that ``page`` would run or load (empty: none)."""
    parser = _Live()
    parser.feed(page)
    parser.close()
    # The report's own scripts: plotly.js, each figure's (its JSON escapes '<' as \u003c, so
    # the value is inert data there) and the explorer's grid data and code.
    own = ("/**", "window.PLOTLYENV", "{")
    return parser.found + [
        s.strip()[:80] for s in parser.scripts if "alert(" in s and not s.strip().startswith(own)
    ]


def test_the_checker_finds_live_markup():
    assert live_markup(f"<p>{HOSTILE}</p>")
    assert not live_markup("<p>&lt;img src=x onerror=alert(1)&gt;</p><script>var a=1</script>")


def _hostile_pages(folder: Path) -> list[report_pages.NotebookPage]:
    fig = {
        "data": [{"type": "scatter", "x": [1, 2], "y": [2, 1], "name": HOSTILE}],
        "layout": {"title": {"text": f"Gap {HOSTILE}<br><sup>{HOSTILE}</sup>"}},
    }
    stem = f"01_duality{HOSTILE.replace('/', '')}"
    blocks = [
        report_pages.Block("markdown", f"# Title {HOSTILE}"),
        report_pages.Block("takeaway", f"takeaway {HOSTILE}"),
        report_pages.Block("figure", fig, f"Gap {HOSTILE}", f"{stem}-fig1"),
        report_pages.Block("html", f"<table><tr><td>{HOSTILE}</td></tr></table>{HOSTILE}"),
        report_pages.Block("text", HOSTILE),
        report_pages.Block("error", f"ValueError: {HOSTILE}"),
    ]
    page = report_pages.NotebookPage(
        stem,
        f"Title {HOSTILE}",
        folder / f"{stem}.ipynb",
        blocks=blocks,
        records={
            "duality_error": HOSTILE,
            HOSTILE: HOSTILE,
            f"table {HOSTILE}": {HOSTILE: [HOSTILE, 1.0]},
        },
        parameters={"profile": "quick", "overrides": HOSTILE},
        error=f"ValueError: {HOSTILE}",
        seconds=HOSTILE,
    )
    return [page]


def test_hostile_values_everywhere_render_as_text(tmp_path):
    pages = _hostile_pages(tmp_path)
    stem = pages[0].stem
    html = render(
        pages,
        profile="quick",
        timings={stem: HOSTILE},
        failures={stem: f"ValueError: {HOSTILE}"},
        explore=False,
    )
    assert live_markup(html) == []
    assert html.count(SHOWN) >= 8, "the values are shown, as text"


def _notebook_01(folder: Path, overrides: str, name: str = "01_duality.ipynb") -> Path:
    """A copy of notebooks/01_duality.ipynb in ``folder`` whose ``overrides`` defaults to
    ``overrides`` (papermill injects only the profile in ``reproduce``)."""
    src = default_notebook_dir() / "01_duality.ipynb"
    nb = json.loads(src.read_text(encoding="utf-8"))
    (cell,) = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    source = "".join(cell["source"])
    assert 'overrides: str = ""' in source
    cell["source"] = source.replace('overrides: str = ""', f"overrides: str = {overrides!r}")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


OVERRIDES = f"data_dir: {HOSTILE}"  # a string Config field: the digits never read it


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_hostile_parameter_through_notebooks_run_stays_text(tmp_path):
    from awbench.apps.cli import main

    notebook = _notebook_01(tmp_path / "src", "")
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"profile": ["smoke"], "overrides": [OVERRIDES]}))
    out = tmp_path / "runs"
    code = main(["notebooks", "run", str(notebook), "--grid", str(grid), "--out", str(out), "-q"])
    assert code == 0
    (executed,) = out.glob("*.ipynb")
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    shutil.copy(executed, report_dir / "01_duality.ipynb")
    page = build_report(report_dir, tmp_path / "index.html", "smoke").read_text(encoding="utf-8")
    assert live_markup(page) == []
    assert SHOWN in page  # the parameter and the settings line show it, as text


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_hostile_parameter_through_reproduce_stays_text(tmp_path):
    # the notebook's file name carries markup as well (a file name holds no '/')
    name = "01_duality<img src=x onerror=alert(1)>.ipynb"
    source = _notebook_01(tmp_path / "src", OVERRIDES, name)
    path = reproduce(tmp_path / "out", "smoke", notebooks=["01"], notebook_dir=source.parent)
    page = path.read_text(encoding="utf-8")
    assert live_markup(page) == []
    assert SHOWN in page and "these numbers check the machinery" in page
