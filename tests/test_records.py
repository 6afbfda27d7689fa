"""Record names tie the notebooks to the report: every record the report reads is one the
notebook writes (checked statically on the py:percent sources), and an executed notebook that
lacks one shows "missing record: NAME" in red rather than a quiet n/a."""

import ast
import math
from pathlib import Path

import pytest

from awbench.apps.report import claims as report_claims
from awbench.apps.report import pages as report_pages
from awbench.apps.report import render as report_render
from awbench.experiments import knob_sweeps
from awbench.experiments import record_names as rn

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
REPORT = sorted((ROOT / "awbench" / "apps" / "report").glob("*.py"))  # the report and its parts


def _constant(node: ast.AST) -> str | None:
    """A record name spelled as a string literal or as ``rn.NAME``; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "rn"
    ):
        value = getattr(rn, node.attr)  # AttributeError: a constant that does not exist
        assert isinstance(value, str), f"rn.{node.attr} is not a record name"
        return value
    return None


def _loop_values(tree: ast.Module) -> dict[str, list[str]]:
    """``for name in [...]`` loop variables over literal lists, to their values."""
    out: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.For)
            and isinstance(node.target, ast.Name)
            and isinstance(node.iter, (ast.List, ast.Tuple))
        ):
            values = [_constant(e) for e in node.iter.elts]
            out[node.target.id] = [v for v in values if v is not None]
    return out


def _dict_keys(tree: ast.Module, name: str) -> list[str]:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Dict)
            and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
        ):
            return [_constant(k) for k in node.value.keys]
    raise AssertionError(f"no dict literal assigned to {name}")


def _callee(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")


def _receiver(call: ast.Call) -> str:
    f = call.func
    return f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""


def written_records(path: Path) -> set[str]:
    """The record names a notebook's source writes with ``aw.record`` or ``record_sweeps``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    loops = _loop_values(tree)
    out: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        arg = node.args[0]
        if _callee(node) == "record":
            name = _constant(arg)
            if name is not None:
                out.add(name)
            elif isinstance(arg, ast.Name):
                out.update(loops.get(arg.id, []))
        elif _callee(node) == "record_sweeps":
            # what record_sweeps writes per knob is checked by test_knob_records_write_...
            assert isinstance(arg, ast.Name), "record_sweeps wants a named dict of runs by knob"
            for knob in _dict_keys(tree, arg.id):
                out.update(rn.knob_record(knob, q) for q in rn.KNOB_QUANTITIES)
            out.update({rn.DUALITY_ERROR, rn.IDENTITY_ERROR})
    return out


@pytest.mark.parametrize("stem", sorted(rn.EXPECTED))
def test_notebook_writes_every_record_the_report_expects(stem):
    path = NOTEBOOKS / f"{stem}.py"
    assert path.exists(), f"EXPECTED names a notebook that does not exist: {stem}"
    missing = rn.EXPECTED[stem] - written_records(path)
    assert not missing, f"{stem}.py does not record {sorted(missing)}"


def test_knob_notebooks_sweep_the_knobs_record_names_says():
    for stem, knobs in rn.NOTEBOOK_KNOBS.items():
        tree = ast.parse((NOTEBOOKS / f"{stem}.py").read_text(encoding="utf-8"))
        assert tuple(_dict_keys(tree, "runs_by_knob")) == knobs, stem


def test_report_reads_only_expected_names():
    """Every name the report passes to _num / _pct / .get, statically, is an expected record."""
    expected = set().union(*rn.EXPECTED.values())
    tree = ast.Module(
        [n for f in REPORT for n in ast.parse(f.read_text(encoding="utf-8")).body], []
    )
    read: set[str] = set()
    quantities: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        callee = _callee(node)
        if callee in ("_num", "_pct") and len(node.args) >= 2:
            name = node.args[1]
            if _constant(name) is not None:
                read.add(_constant(name))
            else:  # a per-knob name, built with k(rn.QUANTITY)
                assert isinstance(name, ast.Call) and _callee(name) == "k", ast.unparse(name)
        elif callee == "get" and _receiver(node) in ("r", "records") and node.args:
            if _constant(node.args[0]) is not None:
                read.add(_constant(node.args[0]))
        elif callee == "k" and len(node.args) == 1:
            quantities.add(_constant(node.args[0]))
        elif (
            callee in ("knob_record", "knob_of")
            and len(node.args) == 2
            # inside the k() helpers the quantity is k's parameter, checked at k's callers
            and not isinstance(node.args[1], ast.Name)
        ):
            quantities.add(_constant(node.args[1]))
    assert read, "found no record reads in the report: the parser is out of date"
    assert read <= expected, f"report reads records no notebook owes it: {read - expected}"
    assert quantities <= set(rn.KNOB_QUANTITIES), quantities - set(rn.KNOB_QUANTITIES)


class _Everything(dict):
    """Records that hold every name (value 0.5), noting which names were asked for."""

    def __init__(self):
        super().__init__()
        self.asked: set[str] = set()

    def __contains__(self, name):
        self.asked.add(name)
        return True

    def get(self, name, default=None):
        self.asked.add(name)
        return 0.5


@pytest.mark.parametrize("claim", report_claims.CLAIMS, ids=lambda c: c.notebook)
def test_each_claim_reads_only_its_notebooks_expected_records(claim):
    r = _Everything()
    text = claim.measured(r)
    # besides records, a claim may read what the report computes over every notebook's runs
    asked = r.asked - {report_claims.CROSS_RUN}
    assert asked <= rn.EXPECTED[claim.notebook], asked - rn.EXPECTED[claim.notebook]
    assert "n/a" not in text and report_claims.MISSING not in text


def test_knob_records_write_every_expected_knob_record(tmp_path):
    from test_report_verdicts import write_sweep

    runs = write_sweep(tmp_path)
    written = knob_sweeps.knob_records(runs, "batch_size", "quick")
    assert {rn.knob_record("batch_size", q) for q in rn.KNOB_QUANTITIES} <= set(written)
    # nothing converged: the report-read numbers are still recorded, as NaN (shown n/a)
    runs["status"], runs["converged"], runs["ok"] = "max_epochs", False, False
    written = knob_sweeps.knob_records(runs, "batch_size", "quick")
    assert {rn.knob_record("batch_size", q) for q in rn.KNOB_QUANTITIES} <= set(written)
    assert math.isnan(written[rn.knob_record("batch_size", rn.SHARPNESS_CHANGE)])


def _page(stem: str, records: dict) -> report_pages.NotebookPage:
    return report_pages.NotebookPage(stem, stem, Path(f"{stem}.ipynb"), records=records)


@pytest.mark.slow
def test_missing_record_is_shown_as_a_failure():
    records = {name: 1e-15 for name in rn.EXPECTED["01_duality"]}
    del records[rn.FLOAT32_LOGIT_ERROR]
    page = _page("01_duality", records)
    assert rn.missing("01_duality", page.records) == [rn.FLOAT32_LOGIT_ERROR]
    html = report_render.render([page])
    flagged = f'<span class="fail">missing record: {rn.FLOAT32_LOGIT_ERROR}</span>'
    claims = html[html.index('id="claims"') : html.index('id="knobs"')]
    assert flagged in claims and "n/a" not in claims
    timing = html[html.index('id="timing"') :]
    assert f'<span class="fail">missing record: {rn.FLOAT32_LOGIT_ERROR}</span>' in timing


@pytest.mark.slow
def test_complete_records_show_no_missing_record():
    page = _page("01_duality", {name: 1e-15 for name in rn.EXPECTED["01_duality"]})
    assert "missing record" not in report_render.render([page])
