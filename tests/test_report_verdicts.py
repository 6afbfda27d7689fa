"""The path from a result store to the report's verdicts: a planted unconverged run in a real
store is left out of every verdict and counted, and the claims table says what it found."""

import numpy as np
import pandas as pd

from awbench.apps.report import knobs as report_knobs
from awbench.apps.report import pages as report_pages
from awbench.config import Config
from awbench.experiments import knob_sweeps
from awbench.experiments.effects import effects
from awbench.experiments.store import Store, config_columns, load_store
from awbench.experiments.verdicts import profile_verdict_table

QUANTITIES = ("sharpness", "size", "sharp_gap", "flat_gap", "real_gap", "pair_gap")


def write_sweep(folder, planted_status="max_epochs"):
    """batch_size 25..400 x 5 seeds: sharpness grows with the batch, size does not move; one
    run at the largest batch has a huge, falling sharpness but did not converge."""
    rng = np.random.default_rng(0)
    store = Store(folder)
    base = Config.preset("smoke")
    for b in (25, 50, 100, 200):
        for seed in range(5):
            cfg = base.replace(batch_size=b, seed=seed)
            planted = b == 200 and seed == 0
            values = {
                "sharpness": 0.001 if planted else np.log2(b) + rng.normal(0, 0.2),
                "size": 1.0 + rng.normal(0, 0.2),
                "sharp_gap": 0.1,
                "flat_gap": 0.05 + rng.normal(0, 0.01),
                "real_gap": 0.2 + rng.normal(0, 0.02),
                "pair_gap": 0.15,
            }
            store.write(
                {
                    "key": cfg.key(),
                    "status": planted_status if planted else "converged",
                    "reason": "test",
                    **config_columns(cfg),
                    **values,
                    "estimated_gap": 0.14,
                    "weight_norm": 3.0,
                    "test_error": 0.05,
                    "duality_error": 1e-15,
                    "identity_error": 1e-16,
                    "finished_at": f"2026-01-01T00:{b % 60:02d}:{seed:02d}",
                }
            )
    return knob_sweeps.with_run_columns(load_store(folder).runs, "batch_size")


def test_planted_unconverged_run_is_left_out_of_the_verdict(tmp_path):
    runs = write_sweep(tmp_path)
    assert int((~runs["converged"]).sum()) == 1 and runs["ok"].all()
    table = profile_verdict_table({"batch_size": runs}, "quick").set_index("quantity")
    assert table.loc["sharpness", "verdict"] == "up"
    assert table.loc["sharpness", "n_runs"] == 19 and table.loc["sharpness", "n_left_out"] == 1
    assert "max_epochs 1" in table.loc["sharpness", "left_out"]
    # size does not move but has 20 % noise: with 5 seeds the interval still holds large
    # changes, which is "inconclusive", never "no clear change"
    assert table.loc["size", "verdict"] == "inconclusive"
    assert table.loc["size", "change_low"] < -1 / 6 or table.loc["size", "change_high"] > 0.2
    # Counted in, the planted run would drag the largest batch's mean far down.
    with_planted = runs.assign(status="converged", converged=True)
    assert (
        effects(with_planted, "batch_size")["sharpness_high"]
        < 0.85 * effects(runs, "batch_size")["sharpness_high"]
    )
    summary = knob_sweeps.summary_table(runs, "batch_size")
    assert summary.loc[200, "converged runs"] == 4 and summary.loc[200, "runs"] == 5


def test_report_claims_from_records(tmp_path):
    runs = write_sweep(tmp_path)
    records = knob_sweeps.knob_records(runs, "batch_size", "quick")
    page = report_pages.NotebookPage(
        "04_sgd_batch_and_lr", "04", tmp_path / "x.ipynb", records=records
    )
    sweeps = report_knobs.knob_sweeps([page])
    assert list(sweeps) == ["batch_size"] and len(sweeps["batch_size"]) == 20
    _, claims = report_knobs.verdict_tables([page])
    claims = claims.set_index("id")
    assert claims.loc["hyp.batch_size.sharpness", "verdict"] == "supported"
    assert claims.loc["paper.batch_size.acts_on_factors", "verdict"] == "supported"
    # No multi-learner records: the DPSGD claims cannot be judged.
    assert claims.loc["paper.dpsgd.gap", "verdict"] == "inconclusive"
    rows = report_knobs.convergence_rows([page])
    assert rows[0][1:3] == ["20", "19"] and "max_epochs 1" in rows[0][3]


def test_value_without_a_converged_run_is_listed(tmp_path):
    runs = write_sweep(tmp_path)
    runs.loc[runs["batch_size"] == 200, ["status", "converged"]] = ("max_epochs", False)
    page = report_pages.NotebookPage(
        "04_sgd_batch_and_lr",
        "04",
        tmp_path / "x.ipynb",
        records=knob_sweeps.knob_records(runs, "batch_size", "quick"),
    )
    (row,) = report_knobs.convergence_rows([page])
    assert row[2] == "15" and row[4] == "200"
    assert (
        (knob_sweeps.summary_table(runs, "batch_size").loc[200, "sharpness"]) == "no converged run"
    )
    assert isinstance(
        pd.DataFrame(knob_sweeps.effects_table({"batch_size": runs}, "quick")), pd.DataFrame
    )


def test_paper_values_a_profile_leaves_out_are_listed():
    assert report_knobs.paper_values_left_out("batch_size", [25, 100, 400]) == [200]
    assert report_knobs.paper_values_left_out("lr", [0.005, 0.01, 0.02, 0.05, 0.1]) == []
    assert report_knobs.paper_values_left_out("not_a_knob", [1]) == []


def test_the_knob_panels_records_are_no_knob_sweep(tmp_path):
    """Notebook 08 records changes along its grid as knobs.<knob>.sharpness_change; they are
    not a sweep and get no row of the knob table (they used to show as 'None -> None')."""
    runs = write_sweep(tmp_path)
    records = {
        **knob_sweeps.knob_records(runs, "batch_size", "quick"),
        "knobs.dropout.sharpness_change": 0.5,
        "knobs.dropout.size_change": 0.1,
    }
    page = report_pages.NotebookPage(
        "04_sgd_batch_and_lr", "04", tmp_path / "x.ipynb", records=records
    )
    assert [r["knob"] for r in report_knobs.knob_rows([page])] == ["batch_size"]
