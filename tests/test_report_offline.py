"""The offline report: one file under 10 MB that loads nothing from the network, states its
runs at the top, formats its recorded numbers, and has sliders over the shipped knob grid that
move the sharpness-vs-size marker and the spectra in a real browser (Debian's chromium driven
by Playwright, no kernel, no server: the file opened from disk).

The report is rendered from prepared pages (a planted knob sweep with one unconverged run, a
figure with a long title, a pandas table, a "Recorded numbers" heading), not from executed
notebooks, so the static checks take a few seconds.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
from browser_support import CHROMIUM_ARGS, playwright_and_chromium
from test_report_verdicts import write_sweep

from awbench.apps.report import pages as report_pages
from awbench.apps.report import sliders as report_sliders
from awbench.apps.report.render import render
from awbench.experiments import knob_sweeps

MAX_BYTES = 10 * 1024 * 1024
LONG_TITLE = (
    "Gap against batch size with the sharp and flat parts of the decomposition and their "
    "spread over seeds, converged runs only"
)


def _pages(folder) -> list[report_pages.NotebookPage]:
    runs = write_sweep(folder)
    records = {
        **knob_sweeps.knob_records(runs, "batch_size", "quick"),
        "ratio": 0.123456789,
        "flag": True,
    }
    fig = {
        "data": [{"type": "scatter", "x": [1, 2, 3], "y": [3, 1, 2]}],
        "layout": {"title": {"text": LONG_TITLE}},
    }
    blocks = [
        report_pages.Block("markdown", "# Batch size and learning rate"),
        report_pages.Block("figure", fig, LONG_TITLE, "04_sgd_batch_and_lr-fig1"),
        report_pages.Block(
            "html", "<table><tr><td>0.571098</td><td>2.775558e-17</td><td>1920</td></tr></table>"
        ),
        report_pages.Block("markdown", "## Recorded numbers"),
    ]
    return [
        report_pages.NotebookPage(
            "04_sgd_batch_and_lr",
            "Batch size and learning rate",
            folder / "04_sgd_batch_and_lr.ipynb",
            blocks=blocks,
            records=records,
            parameters={"profile": "smoke"},
        )
    ]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    path = folder / "index.html"
    path.write_text(render(_pages(folder), profile="smoke"), encoding="utf-8")
    return path


def test_one_file_under_10_mb_that_loads_nothing_from_the_network(report):
    page = report.read_text(encoding="utf-8")
    assert report.stat().st_size < MAX_BYTES
    assert page.count("* plotly.js v") == 1, "plotly.js must be embedded exactly once"
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.IGNORECASE)
    for tag in re.findall(r"<(?:link|img|iframe|source|embed)\b[^>]*>", page, re.IGNORECASE):
        assert not re.search(r"(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", tag), tag
    assert not re.search(r"@import|url\(\s*[\"']?(?:https?:)?//", page.split("<script")[0])


def test_the_top_states_profile_seeds_runs_and_unconverged_runs(report):
    header = report.read_text(encoding="utf-8").split("</header>")[0]
    assert "profile <b>smoke</b>" in header
    assert "knob sweeps: 20 runs, seeds 0–4, 5 per value" in header
    assert (
        "1 run(s) did not converge" in header and "batch_size = 200 seed 0 (max_epochs)" in header
    )


def test_recorded_numbers_are_formatted_once_under_one_heading(report):
    page = report.read_text(encoding="utf-8")
    section = page.split('<section class="nb" id="04_sgd_batch_and_lr">')[1]
    assert len(re.findall(r"Recorded numbers</h\d>", section)) == 1
    records = section.split("Recorded numbers")[1]
    assert "{" not in records and "&#x27;" not in records, "no raw dict in the records table"
    assert "<td class=num>0.1235</td>" in section and "0.123456789" not in section
    assert "20 rows × " in section  # the runs record: a folded table, not a dict
    assert "<td>0.5711</td>" in section and "<td>2.776e-17</td>" in section
    assert "<td>1920</td>" in section


def test_wide_tables_scroll_and_contents_keep_whole_words(report):
    page = report.read_text(encoding="utf-8")
    assert ".scroll,div.table{overflow-x:auto" in page
    assert (
        page.count("<table>") == page.count('<div class="scroll"><table>') + 1
    )  # + the notebook's
    nav = page.split("<nav>")[1].split("</nav>")[0]
    entry = re.search(r'href="#04_sgd_batch_and_lr-fig1"[^>]*>([^<]*)</a>', nav).group(1)
    assert entry.endswith("…") and LONG_TITLE.startswith(entry[:-1])
    assert LONG_TITLE[len(entry) - 1] == " ", f"cut mid-word: {entry!r}"


def test_the_explore_section_embeds_the_shipped_grid(report):
    page = report.read_text(encoding="utf-8")
    data = re.search(
        rf'<script type="application/json" id="{report_sliders.DATA_ID}">(.*?)</script>', page
    )
    payload = json.loads(data.group(1))
    assert "batch_size" in payload["knobs"] and len(payload["runs"]) >= 50
    assert all(len(r["g"]) <= report_sliders.SPECTRUM_POINTS for r in payload["runs"])
    assert (
        f'id="{report_sliders.ROOT_ID}"' in page
    )  # the knob explorer (awbench.apps.knobs.explorer)
    # 261 runs of about 4.4 KB each (the spectra are two thirds of it): 1.15 MB in all
    assert len(data.group(1)) < 1_500_000


def _state(page) -> dict:
    return page.evaluate(
        """() => {
          const q = s => document.querySelector('.awbench-explorer ' + s);
          const p = q('.awbench-present-plane').data;
          const g = q('.awbench-present-sigma_g').data, w = q('.awbench-present-sigma_w').data;
          return {here: [p[4].x[0], p[4].y[0]], run: [p[3].x[0], p[3].y[0]],
                  g: Array.from(g[1].y), w: Array.from(w[1].y),
                  note: q('.aw-note').textContent + ' ' + q('.aw-takeaway').textContent};
        }"""
    )


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_report_sliders_move_the_marker_and_spectra_offline(report, tmp_path):
    sync_playwright, chromium = playwright_and_chromium()
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("request", lambda r: requests.append(r.url))
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(report.as_uri(), wait_until="load")
            page.wait_for_selector(".awbench-explorer[data-seq] .aw-panel .main-svg")
            explore = page.locator("div.awbench-explorer")
            explore.scroll_into_view_if_needed()
            before = _state(page)
            assert "The default setting" in before["note"]
            explore.screenshot(path=str(tmp_path / "explore-default.png"))

            page.focus(".awbench-knob-batch_size input")
            page.keyboard.press("ArrowRight")  # batch size 25 -> 100
            page.wait_for_function(
                "document.querySelector('.awbench-knob-batch_size output').textContent === '100'"
            )
            moved = _state(page)
            assert moved["here"] != before["here"] and moved["run"] != before["run"]
            assert moved["g"] != before["g"] and moved["w"] != before["w"]
            assert "batch size B = 100" in moved["note"]
            explore.screenshot(path=str(tmp_path / "explore-batch100.png"))

            page.focus(".awbench-knob-lr input")
            page.keyboard.press("ArrowRight")  # lr 0.1 -> 0.2: crossed with batch size
            page.wait_for_function(
                "document.querySelector('.awbench-knob-lr output').textContent === '0.2 ⚠'"
            )
            crossed = _state(page)
            assert "not on the grid" not in crossed["note"]
            assert "beyond the paper's range (0.005–0.1)" in crossed["note"]
            assert page.input_value(".awbench-knob-batch_size input") == "1", "stays at 100"
            assert crossed["here"] != moved["here"] and crossed["g"] != moved["g"]

            page.focus(".awbench-knob-label_noise input")
            page.keyboard.press("ArrowRight")  # label noise 0 -> 0.1 was only moved alone
            page.wait_for_function(
                "document.querySelector('.awbench-knob-label_noise output').textContent === '0.1'"
            )
            snapped = _state(page)
            assert "not on the grid" in snapped["note"]
            assert "batch size B 100 → 25, learning rate α 0.2 → 0.1" in snapped["note"]
            assert page.input_value(".awbench-knob-batch_size input") == "0", "snaps back to 25"
            assert snapped["here"] != crossed["here"] and snapped["g"] != crossed["g"]
            explore.screenshot(path=str(tmp_path / "explore-snapped.png"))
            page.screenshot(path=str(tmp_path / "report-top.png"))
        finally:
            browser.close()
    assert not errors, errors
    outside = [u for u in requests if not u.startswith(("file://", "data:", "blob:", "about:"))]
    assert not outside, f"the report asked the network for {outside}"
    assert requests and requests[0].startswith("file://")
    shutil.copy(tmp_path / "explore-batch100.png", "/tmp/report_slider_screenshot.png")


def test_a_hostile_parameter_stays_text_in_the_report():
    """A parameter value with a backtick and an img tag cannot become markup (stored XSS)."""
    from awbench.apps.report.html import render_markdown
    from awbench.config import Config
    from awbench.experiments.notebook_params import config_text

    hostile = "x`<img src=x onerror=alert(1)>"
    text = config_text(Config.preset("paper").replace(data_dir=hostile))
    out = render_markdown(text) + render_markdown(f"takeaway {hostile} <script>alert(2)</script>")
    assert "<img" not in out and "<script" not in out
    assert "&lt;img src=x onerror=alert(1)&gt;" in out
    # Markdown still renders: emphasis and tables are markup on purpose
    assert "<strong>b</strong>" in render_markdown("**b**")
    assert "<table>" in render_markdown("| a |\n|---|\n| 1 |")


def _claims_table(page: str) -> str:
    return page[page.index('id="claims"') : page.index('id="knobs"')]


def test_the_smoke_report_says_it_checks_the_machinery_and_shows_no_verdict_colours(report):
    page = report.read_text(encoding="utf-8")
    header = page.split("</header>")[0]
    assert "these numbers check the machinery, they are not results" in header
    claims = _claims_table(page)
    verdicts = page[page.index('id="verdicts"') : page.index('id="convergence"')]
    assert '<span class="muted">supported</span>: batch size ↑ → sharper' in claims
    for part in (claims, verdicts):
        assert not re.search(r'class="(?:ok|fail)">(?:supported|contradicted)', part), part


def test_the_claims_table_has_a_verdict_column_with_a_legend(tmp_path):
    from awbench.apps.report.claims import CLAIMS

    pages = _pages(tmp_path)
    pages.append(
        report_pages.NotebookPage(
            "01_duality", "Duality", tmp_path / "01.ipynb", records={"duality_error": 2e-14}
        )
    )
    page = render(pages, profile="quick", explore=False)
    assert "these numbers check the machinery" not in page
    claims = _claims_table(page)
    assert "<th>verdict</th>" in claims and "Verdict: that of each claim's own test" in claims
    assert '<span class="ok">supported</span>: batch size ↑ → sharper' in claims
    assert 'check: <span class="ok">passes</span>' in claims  # the duality: an identity
    assert claims.count("<td>check: ") == sum(c.check is not None for c in CLAIMS)
    rows = re.findall(r"<tr>(.*?)</tr>", claims)[1:]
    assert len(rows) == len(CLAIMS)
    # a row with neither a claim of the claims table nor a check, e.g. notebook 02's
    assert any("02_hessian_and_landscape" in r and r.endswith("<td>—</td>") for r in rows)
