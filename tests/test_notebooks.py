"""The notebook series: every notebook runs headless (profile smoke) and records sane numbers;
parameters are declared with help; bad values fail naming the parameter; notebooks are
committed stripped and paired with their py:percent file.

Each notebook is executed once per session (module-scoped cache of executed paths); the
whole file takes a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from awbench.experiments import record_names as rn
from awbench.experiments.records import read_records

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(p for p in NB_DIR.glob("*.ipynb") if re.match(r"^\d\d_", p.name))
IDS = [p.stem for p in NOTEBOOKS]
KERNEL = "python3"
EXACT = 1e-10  # duality and identity hold to rounding (float64)
# The paper series (00-07) must record both errors; later notebooks are checked when they do.
SERIES = ("00", "01", "02", "03", "04", "05", "06", "07")

pytestmark = pytest.mark.slow


def _papermill():
    """papermill, imported when a test uses it: its import takes seconds (nbconvert,
    jsonschema), which every collection (make check's too) would otherwise pay."""
    import papermill

    return papermill


def _execute(src: Path, dst: Path, **parameters):
    return _papermill().execute_notebook(
        str(src),
        str(dst),
        parameters=parameters,
        kernel_name=KERNEL,
        progress_bar=False,
        log_output=False,
        cwd=str(NB_DIR),
    )


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Executed smoke copy of a notebook, run on first use."""
    out_dir = tmp_path_factory.mktemp("executed")
    done: dict[str, Path] = {}

    def get(src: Path) -> Path:
        if src.stem not in done:
            dst = out_dir / src.name
            _execute(src, dst, profile="smoke")
            done[src.stem] = dst
        return done[src.stem]

    return get


def _numbers(value, where=""):
    """Every number inside a record value (lists and dicts flattened) with its path."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, (int, float)):
        yield where, value
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{where}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{where}.{k}")


def test_there_are_notebooks():
    stems = {p.stem.split("_")[0] for p in NOTEBOOKS}
    assert {"00", "01", "03", "04", "05", "06", "07"} <= stems, stems


@pytest.mark.parametrize("src", NOTEBOOKS, ids=IDS)
def test_smoke_run_records(src, executed):
    records = read_records(executed(src))
    assert records, f"{src.name} recorded nothing"
    missing = rn.missing(src.stem, records)
    assert not missing, f"{src.name} lacks records the report reads: {missing}"
    bad = [
        f"{name}{where}={v}"
        for name, value in records.items()
        for where, v in _numbers(value)
        if not math.isfinite(v)
    ]
    assert not bad, f"{src.name} recorded non-finite numbers: {bad}"
    duality = {k: v for k, v in records.items() if "duality_error" in k}
    identity = {k: v for k, v in records.items() if "identity_error" in k}
    if src.name.startswith(SERIES):
        assert duality, f"{src.name} records no duality error"
        assert identity, f"{src.name} records no identity error"
    for name, value in {**duality, **identity}.items():
        assert 0 <= value <= EXACT, f"{src.name}: {name} = {value} > {EXACT}"


@pytest.mark.parametrize("src", NOTEBOOKS, ids=IDS)
def test_smoke_run_has_figures_and_takeaways(src, executed):
    nb = json.loads(executed(src).read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    takeaways = [o for o in outputs if "text/markdown" in o.get("data", {})]
    assert len(figures) >= 2, f"{src.name} shows {len(figures)} figures"
    assert takeaways, f"{src.name} shows no computed takeaway"
    for fig in figures:
        layout = fig["data"]["application/vnd.plotly.v1+json"]["layout"]
        title = layout.get("title", {})
        assert title.get("text") if isinstance(title, dict) else title, (
            f"{src.name}: a figure has no title"
        )
    assert not any(o.get("output_type") == "error" for o in outputs)


@pytest.mark.parametrize("src", NOTEBOOKS, ids=IDS)
def test_parameters_declared_with_help(src):
    params = _papermill().inspect_notebook(str(src))
    assert "profile" in params and "seed" in params, sorted(params)
    assert params["profile"]["inferred_type_name"] == "str"
    assert params["profile"]["default"] in ('"quick"', "'quick'")
    assert params["seed"]["inferred_type_name"] == "int"
    missing = [name for name, p in params.items() if not (p.get("help") or "").strip()]
    assert not missing, f"{src.name}: parameters without a help comment: {missing}"
    untyped = [name for name, p in params.items() if p.get("inferred_type_name") in (None, "None")]
    assert not untyped, f"{src.name}: parameters without a type: {untyped}"


def test_help_notebook_lists_parameters():
    src = NB_DIR / "00_tour.ipynb"
    out = subprocess.run(
        [sys.executable, "-m", "papermill", "--help-notebook", str(src)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    for name, p in _papermill().inspect_notebook(str(src)).items():
        assert name in out.stdout
        assert p["help"].strip()[:20] in out.stdout


@pytest.mark.parametrize(
    "notebook, parameters, named",
    [
        ("00_tour", {"profile": "smoke", "batch_size": -3}, "batch_size"),
        ("04_sgd_batch_and_lr", {"profile": "fast"}, "profile"),
        ("04_sgd_batch_and_lr", {"profile": "smoke", "lr_grid": "0.1, fast"}, "lr_grid"),
    ],
)
def test_bad_parameter_fails_naming_it(notebook, parameters, named, tmp_path):
    with pytest.raises(_papermill().PapermillExecutionError) as info:
        _execute(NB_DIR / f"{notebook}.ipynb", tmp_path / "bad.ipynb", **parameters)
    assert named in info.value.evalue, info.value.evalue


@pytest.mark.parametrize("src", NOTEBOOKS, ids=IDS)
def test_committed_stripped(src):
    nb = json.loads(src.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{src.name} cell {i} has outputs"
            assert cell.get("execution_count") is None, (
                f"{src.name} cell {i} has an execution count"
            )
        meta = set(cell.get("metadata", {})) - {"tags"}
        assert not meta, f"{src.name} cell {i} has metadata {meta}"
    assert not {"widgets", "papermill"} & set(nb["metadata"]), sorted(nb["metadata"])
    assert nb["metadata"]["kernelspec"]["name"] == KERNEL
    tags = [c.get("metadata", {}).get("tags", []) for c in nb["cells"]]
    assert sum("parameters" in t for t in tags) == 1, (
        f"{src.name}: expected exactly one parameters cell"
    )
    assert nb["cells"][0]["cell_type"] == "markdown", f"{src.name} does not open with markdown"


@pytest.mark.parametrize("src", NOTEBOOKS, ids=IDS)
def test_paired_with_py_percent(src):
    nb = json.loads(src.read_text())
    assert nb["metadata"].get("jupytext", {}).get("formats") == "ipynb,py:percent"
    py = src.with_suffix(".py")
    assert py.exists(), f"{py.name} (the py:percent pair) is missing"
    import jupytext

    text = jupytext.read(py, fmt="py:percent")
    ipynb_cells = [(c["cell_type"], "".join(c["source"]).strip()) for c in nb["cells"]]
    py_cells = [(c.cell_type, c.source.strip()) for c in text.cells]
    assert ipynb_cells == py_cells, f"{src.name} and {py.name} differ: run `jupytext --sync {py}`"


def test_report_from_smoke_runs(executed, tmp_path):
    """The report embeds plotly.js once (no CDN), lists every notebook and figure in its
    contents, and puts the paper's claims next to measured numbers."""
    from awbench.apps.report.build import build_report
    from awbench.apps.report.pages import read_notebook

    run_dir = tmp_path / "notebooks"
    run_dir.mkdir()
    for src in NOTEBOOKS:
        (run_dir / src.name).write_bytes(executed(src).read_bytes())
    path = build_report(run_dir, tmp_path / "report" / "index.html", profile="smoke")
    page = path.read_text(encoding="utf-8")
    assert page.count("* plotly.js v") == 1, "plotly.js must be embedded exactly once"
    assert not re.search(r"<script[^>]*\bsrc=", page), (
        "the report must not load scripts from elsewhere"
    )
    assert 'id="claims"' in page and 'id="knobs"' in page
    for src in NOTEBOOKS:
        nb = read_notebook(run_dir / src.name)
        assert f'id="{src.stem}"' in page
        for block in nb.blocks:
            if block.kind == "figure":
                assert f'href="#{block.anchor}"' in page and f'id="{block.anchor}"' in page
    assert "notebook failed" not in page
