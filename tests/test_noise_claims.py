"""The follow-up's claims (notebook 11) on planted evidence: supported, contradicted and
inconclusive; their tests against scipy; the report reads them from notebook 11's records and
labels their source; the notebook's helpers (evidence over converged seeds, the minibatch
trace against its formula, the figures and sentences)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from awbench.analysis.noise import minibatch_trace
from awbench.apps.report import knobs as report_knobs
from awbench.apps.report import pages as report_pages
from awbench.apps.report.render import _claims_table
from awbench.experiments import claims as cl
from awbench.experiments import noise_runs
from awbench.experiments import record_names as rn
from awbench.experiments import verdicts as vd
from awbench.viz import noise_plots as npl
from awbench.viz import noise_takeaways as nt

IDS = ("followup.gamma_ce", "followup.gamma_mse", "followup.commute")


def _verdicts(noise):
    return cl.claim_verdicts(vd.verdict_table({}, ()), noise=noise).set_index("id")


def _planted(gamma_ce, gamma_mse, commutator, baseline, n=10, spread=0.01, seed=0):
    r = np.random.default_rng(seed)
    return {
        "gamma_ce": list(gamma_ce + r.normal(0, spread, n)),
        "gamma_mse": list(gamma_mse + r.normal(0, spread, n)),
        "commutator": list(commutator * np.exp(r.normal(0, spread, n))),
        "commutator_baseline": list(baseline * np.exp(r.normal(0, spread, n))),
    }


def test_follow_up_claims_are_in_the_family_with_their_source():
    ids = [c.id for c in cl.CLAIMS]
    assert set(IDS) <= set(ids)
    assert {c.source for c in cl.CLAIMS if c.id in IDS} == {"follow-up"}
    assert {c.knob for c in cl.CLAIMS if c.id in IDS} == {"noise"}


def test_supported_on_planted_evidence_holm_over_the_whole_family():
    got = _verdicts(_planted(1.3, 1.0, 0.02, 0.05))
    assert (got.loc[list(IDS), "verdict"] == "supported").all(), got.loc[list(IDS)]
    assert got.loc["followup.gamma_ce", "found"] == "gamma_ce above 1"
    assert got.loc["followup.commute", "found"] == "commutator below chance"
    tested = got["p"].notna()
    np.testing.assert_allclose(
        got.loc[tested, "p_holm"], vd.holm(got["p"].fillna(1.0))[tested.to_numpy()]
    )
    assert got.attrs["n_tests"] == 3


def test_contradicted_on_planted_evidence():
    got = _verdicts(_planted(0.8, 1.4, 0.09, 0.05))
    assert (got.loc[list(IDS), "verdict"] == "contradicted").all(), got.loc[list(IDS)]
    assert "outside 1 ± 0.1" in got.loc["followup.gamma_mse", "found"]


def test_inconclusive_with_few_seeds_noise_or_no_evidence():
    # two noisy seeds: nothing survives Holm
    got = _verdicts(_planted(1.1, 1.0, 0.06, 0.05, n=2, spread=0.1))
    assert (got.loc[list(IDS), "verdict"] == "inconclusive").all()
    # none at all: no test, "inconclusive", and the reason says why
    got = _verdicts(None)
    assert (got.loc[list(IDS), "verdict"] == "inconclusive").all()
    assert got.loc[list(IDS), "p"].isna().all()
    assert "fewer than 2" in got.loc["followup.gamma_ce", "because"]
    # within the margin but too spread to prove it: inconclusive, not contradicted
    got = _verdicts(_planted(1.0, 1.05, 0.05, 0.05, n=4, spread=0.2))
    assert got.loc["followup.gamma_mse", "verdict"] == "inconclusive"


def test_the_tests_match_scipy():
    noise = _planted(1.1, 1.02, 0.06, 0.05, n=6, spread=0.05, seed=3)
    got = _verdicts(noise)
    g = np.array(noise["gamma_ce"])
    assert got.loc["followup.gamma_ce", "p"] == pytest.approx(stats.ttest_1samp(g, 1.0).pvalue)
    m = np.array(noise["gamma_mse"])
    tost = max(
        stats.ttest_1samp(m, 1 - cl.GAMMA_MARGIN, alternative="greater").pvalue,
        stats.ttest_1samp(m, 1 + cl.GAMMA_MARGIN, alternative="less").pvalue,
    )
    assert got.loc["followup.gamma_mse", "p"] == pytest.approx(tost)
    c, b = np.log(noise["commutator"]), np.log(noise["commutator_baseline"])
    assert got.loc["followup.commute", "p"] == pytest.approx(stats.ttest_rel(c, b).pvalue)


def _page(records):
    return report_pages.NotebookPage("11_sgd_noise_and_curvature", "11", "x.ipynb", records=records)


def test_report_reads_notebook_11_and_labels_the_follow_up():
    noise = _planted(1.3, 1.0, 0.02, 0.05)
    names = {
        "gamma_ce": rn.NOISE_GAMMA_CE,
        "gamma_mse": rn.NOISE_GAMMA_MSE,
        "commutator": rn.NOISE_COMMUTATOR,
        "commutator_baseline": rn.NOISE_COMMUTATOR_BASELINE,
    }
    records = {names[k]: v for k, v in noise.items()}
    assert set(records) == rn.EXPECTED["11_sgd_noise_and_curvature"]
    table, claims = report_knobs.verdict_tables([_page(records)])
    assert table is not None and table.empty
    claims = claims.set_index("id")
    assert (claims.loc[list(IDS), "verdict"] == "supported").all()
    html = _claims_table(claims.reset_index())
    assert "the follow-up" in html and "our hypothesis" in html and "the paper" in html
    assert report_knobs.verdict_tables([_page({})]) == (None, None)


# --- the notebook's helpers ------------------------------------------------------------------


def _seed_table(loss, gammas, statuses):
    rows = []
    for s, (g, st) in enumerate(zip(gammas, statuses)):
        ok = st == "converged"
        rows.append(
            {
                "seed": s,
                "loss": loss,
                "status": st,
                "converged": ok,
                "gamma": g if ok else math.nan,
                "gamma_low": g - 0.02,
                "gamma_high": g + 0.02,
                "gamma_predicted": g + 0.01,
                "eh2_exponent": 1.0 + 0.01 * s,
                "commutator": 0.08 + 0.001 * s,
                "commutator_baseline": 0.05,
                "commutator_baseline_std": 0.001,
            }
        )
    return pd.DataFrame(rows)


def test_evidence_counts_converged_seeds_only_and_sentences_say_so():
    ce = _seed_table("ce", [1.1, 1.12, 1.3], ["converged", "converged", "max_epochs"])
    mse = _seed_table("mse", [1.0, 1.02, 0.99], ["converged"] * 3)
    ev = noise_runs.noise_evidence(ce, mse)
    assert ev["gamma_ce"] == [1.1, 1.12] and len(ev["gamma_mse"]) == 3
    assert len(ev["commutator"]) == len(ev["commutator_baseline"]) == 2
    assert "2 of 3" in nt.status_sentence({"ce": ce, "mse": mse}, {"ce": 0.1, "mse": 1.0})
    assert "max_epochs" in nt.status_sentence({"ce": ce}, {"ce": 0.1})
    assert "**1.110**" in nt.gamma_sentence(ce, "ce")
    assert "0 of 2" in nt.commutator_sentence(ce, "ce")
    for fig in (
        npl.gamma_over_seeds({"ce": ce, "mse": mse}),
        npl.commutator_against_baseline({"ce": ce}),
    ):
        assert fig.layout.title.text
    claims = cl.claim_verdicts(vd.verdict_table({}, ()), noise=ev)
    assert nt.claims_sentence(claims).count("\n") == 2


def test_minibatch_trace_follows_the_without_replacement_formula():
    g = torch.randn(60, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    frame = minibatch_trace(g, [1, 6, 30, 60], n_batches=3000, seed=1)
    assert frame.loc[frame["batch_size"] == 60, "exact"].item() == 0
    assert frame.loc[frame["batch_size"] == 60, "measured"].item() == pytest.approx(0, abs=1e-20)
    rows = frame[frame["batch_size"] < 60]
    assert ((rows["measured"] - rows["exact"]).abs() < 4 * rows["measured_se"]).all()
    assert noise_runs.batch_sizes(400) == [4, 10, 25, 50, 100, 200]
    assert npl.noise_against_batch_size(frame, 60).layout.title.text
    assert "fold" in nt.batch_sentence(rows)
