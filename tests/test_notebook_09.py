"""Notebook 09 (several learners: SSGD against DPSGD and local SGD): a smoke run records
exact duality and identity and finite numbers; the committed notebook is stripped and paired
with its py:percent file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from awbench import read_records

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"
SRC = NB_DIR / "09_multi_learner.ipynb"
EXACT = 1e-10


@pytest.mark.slow
def test_smoke_run_records_exact_and_finite(tmp_path):
    out = tmp_path / SRC.name
    import papermill  # seconds to import (nbconvert, jsonschema): only where a test runs it

    papermill.execute_notebook(
        str(SRC),
        str(out),
        parameters={"profile": "smoke", "store": str(tmp_path / "store")},
        kernel_name="python3",
        progress_bar=False,
        log_output=False,
        cwd=str(NB_DIR),
    )
    records = read_records(out)
    for alg in ("ssgd", "dpsgd"):
        for col in ("real_gap", "sharpness", "size"):
            assert f"{col}_{alg}" in records, sorted(records)
    assert isinstance(records["agrees_with_claim"], bool)
    pairs = records["multilearner.pairs"]  # per-seed numbers the report's DPSGD row reads
    assert pairs["seed"] == [0, 1] and set(pairs["status_ssgd"]) <= {"converged", "max_epochs"}
    assert 0 <= records["identity_error"] <= EXACT, records["identity_error"]
    assert 0 <= records["duality_error"] <= EXACT, records["duality_error"]
    # means over converged runs only: NaN, never a number, when no smoke run converged
    for alg in ("ssgd", "dpsgd"):
        converged = pairs[f"status_{alg}"].count("converged")
        assert records[f"n_converged_{alg}"] == converged
        assert math.isfinite(records[f"real_gap_{alg}"]) == (converged > 0)
    nb = json.loads(out.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert sum("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outputs) >= 2
    takeaway = [
        "".join(o["data"]["text/markdown"]) for o in outputs if "text/markdown" in o.get("data", {})
    ]
    assert any("the paper's claim" in t for t in takeaway), takeaway


def test_committed_stripped_and_paired():
    nb = json.loads(SRC.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"cell {i} has outputs"
            assert cell.get("execution_count") is None, f"cell {i} has an execution count"
        assert not set(cell.get("metadata", {})) - {"tags"}, f"cell {i} has metadata"
    assert nb["cells"][0]["cell_type"] == "markdown"
    tags = [c.get("metadata", {}).get("tags", []) for c in nb["cells"]]
    assert sum("parameters" in t for t in tags) == 1
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert nb["metadata"].get("jupytext", {}).get("formats") == "ipynb,py:percent"
    py = SRC.with_suffix(".py")
    assert py.exists(), f"{py.name} (the py:percent pair) is missing"
    import jupytext

    text = jupytext.read(py, fmt="py:percent")
    assert [(c["cell_type"], "".join(c["source"]).strip()) for c in nb["cells"]] == [
        (c.cell_type, c.source.strip()) for c in text.cells
    ], f"run `jupytext --sync {py}`"


def test_parameters_typed_with_help():
    import papermill

    params = papermill.inspect_notebook(str(SRC))
    for name in ("profile", "seed", "dataset", "n_learners", "topology"):
        assert name in params, sorted(params)
        assert (params[name].get("help") or "").strip(), name
        assert params[name].get("inferred_type_name") not in (None, "None"), name
    assert params["profile"]["default"] in ('"quick"', "'quick'")
