"""Verdicts: known effects come out as such, noise does not, left-out runs are counted."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from awbench.experiments import claims as cl
from awbench.experiments import verdicts as vd

FAST = {"n_boot": 500, "n_perm": 500}
VALUES = (16, 32, 64, 128)


def sweep(
    effect, *, seeds=5, values=VALUES, rng=0, paired=True, knob="batch_size", quantity="sharpness"
):
    """One knob sweep, every run converged; ``effect(value, rng)`` draws one run's quantity."""
    r = np.random.default_rng(rng)
    rows = [
        {
            knob: v,
            "seed": s if paired else f"{s}@{v}",
            "status": "converged",
            quantity: effect(v, r),
        }
        for s in range(seeds)
        for v in values
    ]
    return pd.DataFrame(rows)


def one_verdict(runs, knob="batch_size", quantity="sharpness", **kw):
    table = vd.verdict_table({knob: runs}, quantities=(quantity,), **{**FAST, **kw})
    return table.iloc[0]


def monotone(v, r):
    return 1.0 + np.log2(v) + r.normal(0, 0.3)


def noise(v, r):
    return r.normal(0, 1)


# --- Holm ----------------------------------------------------------------------------------


def test_holm_on_hand_computed_values():
    # sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> max(0.06, 0.04)
    np.testing.assert_allclose(vd.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])


def test_holm_skips_nan_caps_at_one_and_keeps_shape():
    out = vd.holm([0.01, math.nan, 0.04])
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.04])  # m = 2: NaN is not a comparison
    assert math.isnan(out[1])
    np.testing.assert_allclose(vd.holm([0.5, 0.6]), [1.0, 1.0])
    assert vd.holm(np.full((2, 2), 0.01)).shape == (2, 2)
    assert vd.holm([]).size == 0
    with pytest.raises(ValueError):
        vd.holm([1.5])


def test_holm_adjusted_values_keep_the_order_of_raw_ones():
    p = np.random.default_rng(3).uniform(0, 0.2, 30)
    adj = vd.holm(p)
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= 0)
    assert np.all(adj >= p)


# --- one knob ------------------------------------------------------------------------------


def test_rho_is_spearman_over_all_converged_runs():
    runs = sweep(monotone)
    e = vd.knob_effect(runs, "batch_size", "sharpness", **FAST)
    assert e["rho"] == pytest.approx(
        stats.spearmanr(runs["batch_size"], runs["sharpness"]).statistic
    )
    assert e["n_runs"] == 20 and e["n_values"] == 4 and e["n_left_out"] == 0
    assert e["rho_low"] <= e["rho"] <= e["rho_high"]
    assert list(e["mean_by_value"]) == list(VALUES)
    means = runs.groupby("batch_size")["sharpness"].mean()
    assert e["change"] == pytest.approx((means[128] - means[16]) / abs(means[16]))


def test_known_monotone_effect_is_up_and_negated_is_down():
    up = sweep(monotone, rng=1)
    row = one_verdict(up)
    assert row.verdict == "up" and row.rho > 0.8 and row.rho_low > 0.5
    down = up.assign(sharpness=-up["sharpness"])
    row = one_verdict(down)
    assert row.verdict == "down" and row.rho < -0.8 and row.rho_high < -0.5


def test_pure_noise_is_no_clear_change_and_false_positives_are_rare():
    assert one_verdict(sweep(noise, rng=2)).verdict == "no clear change"
    found = [one_verdict(sweep(noise, rng=100 + i), n_boot=100, seed=i).verdict for i in range(20)]
    # Each test runs at 0.05 (Holm over two tests): 20 null datasets expect about 1-2 effects.
    assert sum(v != "no clear change" for v in found) <= 4


def test_u_shaped_effect_is_non_monotone():
    values = (1, 2, 3, 4, 5)
    row = one_verdict(sweep(lambda v, r: (v - 3) ** 2 + r.normal(0, 0.3), values=values, rng=4))
    assert row.verdict == "non-monotone"
    assert abs(row.rho) < 0.3 and row.p_kruskal_holm < 0.01


def test_kruskal_needs_three_values_with_two_runs():
    e = vd.knob_effect(sweep(monotone, values=(1, 2)), "batch_size", "sharpness", **FAST)
    assert math.isnan(e["p_kruskal"])


def test_unconverged_outlier_is_left_out_and_counted():
    runs = sweep(lambda v, r: 10.0 - np.log2(v) + r.normal(0, 0.3), rng=5)
    outlier = {"batch_size": 128, "seed": 0, "status": "max_epochs", "sharpness": 1e6}
    planted = pd.concat([runs, pd.DataFrame([outlier])], ignore_index=True)
    e = vd.knob_effect(planted, "batch_size", "sharpness", **FAST)
    assert e["n_left_out"] == 1 and e["left_out_by_status"] == {"max_epochs": 1}
    assert e["n_runs"] == 20 and e["change"] < 0
    assert one_verdict(planted).verdict == "down"
    # Had it counted, the mean at the largest batch would have turned the change around.
    counted = planted.assign(status="converged")
    assert vd.knob_effect(counted, "batch_size", "sharpness", **FAST)["change"] > 0


def test_failed_and_non_finite_runs_are_counted_by_status():
    runs = sweep(monotone)
    extra = pd.DataFrame(
        [
            {"batch_size": 16, "seed": 9, "status": "failed", "sharpness": math.nan},
            {"batch_size": 32, "seed": 9, "status": "diverged", "sharpness": math.inf},
            {"batch_size": 64, "seed": 9, "status": "converged", "sharpness": math.nan},
        ]
    )
    e = vd.knob_effect(
        pd.concat([runs, extra], ignore_index=True), "batch_size", "sharpness", **FAST
    )
    assert e["n_left_out"] == 3 and e["n_runs"] == 20
    assert e["left_out_by_status"] == {"converged, non-finite": 1, "diverged": 1, "failed": 1}


def test_value_with_only_max_epochs_runs_is_listed_and_excluded():
    runs = sweep(monotone, values=(16, 32, 64, 128, 256))
    runs.loc[runs["batch_size"] == 256, "status"] = "max_epochs"
    e = vd.knob_effect(runs, "batch_size", "sharpness", **FAST)
    assert e["values_without_converged"] == [256]
    assert e["n_values"] == 4 and 256 not in e["mean_by_value"]
    assert e["left_out_by_status"] == {"max_epochs": 5}
    row = one_verdict(runs)
    assert row.values_without_converged == "256" and row.left_out == "max_epochs 5"


def test_not_enough_data():
    two_runs_each = sweep(monotone, seeds=1, values=(16, 32, 64))
    assert one_verdict(two_runs_each).verdict == "not enough data"  # 3 runs < 4
    one_value = sweep(monotone, seeds=6, values=(16,))
    row = one_verdict(one_value)
    assert row.verdict == "not enough data" and row.n_values == 1
    # Tests that did not run are not comparisons.
    assert row.n_comparisons == 0


# --- interval and pairing ------------------------------------------------------------------


def test_interval_covers_the_population_rho():
    def effect(v, r):
        return 0.3 * np.log2(v) + r.normal(0, 1)

    truth = stats.spearmanr(
        *sweep(effect, seeds=20000, rng=99)[["batch_size", "sharpness"]].to_numpy().T
    ).statistic
    covered = []
    for i in range(60):
        e = vd.knob_effect(
            sweep(effect, seeds=10, rng=i), "batch_size", "sharpness", n_boot=400, n_perm=0
        )
        covered.append(e["rho_low"] <= truth <= e["rho_high"])
    # Nominal 95 %; a percentile interval over 10 seeds runs a little under.
    assert np.mean(covered) >= 0.8


def test_shared_seeds_resample_seeds_and_permute_within_seed():
    # A seed offset far larger than the effect: only the paired analysis sees through it.
    def effect(v, r):
        return 0.2 * np.log2(v)

    r = np.random.default_rng(6)
    offsets = r.normal(0, 5, 8)
    paired = sweep(effect, seeds=8, rng=6)
    paired["sharpness"] += offsets[paired["seed"]] + r.normal(0, 0.05, len(paired))
    unpaired = paired.assign(
        seed=[f"{s}@{v}" for s, v in zip(paired["seed"], paired["batch_size"])]
    )

    e_p = vd.knob_effect(paired, "batch_size", "sharpness", **FAST)
    e_u = vd.knob_effect(unpaired, "batch_size", "sharpness", **FAST)
    assert e_p["paired"] and e_p["resampling"] == "seeds (paired)" and e_p["n_seeds"] == 8
    assert not e_u["paired"] and e_u["resampling"] == "runs within values" and e_u["n_seeds"] == 32
    # Paired, the effect is read within each seed: the offsets cancel and rho is nearly perfect;
    # unpaired, the same runs drown it in the offsets.
    assert e_p["rho"] > 0.9 and abs(e_u["rho"]) < 0.5
    assert e_p["rho_low"] > 0.8 and e_p["rho_high"] > e_p["rho"] - 0.01  # at the ceiling
    assert e_p["p_monotone"] < 0.01
    assert e_u["p_monotone"] > 0.1


def test_paired_permutation_keeps_labels_within_seed():
    groups = np.array([0, 0, 1, 1, 1, 2, 2, 0])
    perm = vd._within_group_permutations(groups, 200, np.random.default_rng(0))
    assert np.all(groups[perm] == groups)
    assert all(sorted(row) == list(range(groups.size)) for row in perm)
    assert len({tuple(row) for row in perm}) > 20


def test_weighted_ranks_match_spearman_of_the_expanded_sample():
    r = np.random.default_rng(7)
    x = r.integers(0, 4, 15).astype(float)
    y = r.normal(size=15)
    y[3] = y[4]
    w = r.integers(0, 3, (5, 15)).astype(float)
    got = vd._spearman_weighted(x, y, w)
    for row, g in zip(w.astype(int), got):
        assert g == pytest.approx(stats.spearmanr(np.repeat(x, row), np.repeat(y, row)).statistic)


def test_reproducible_and_streams_independent():
    runs = sweep(monotone)
    a = vd.knob_effect(runs, "batch_size", "sharpness", n_boot=300, n_perm=300, seed=1)
    b = vd.knob_effect(runs, "batch_size", "sharpness", n_boot=300, n_perm=300, seed=1)
    c = vd.knob_effect(runs, "batch_size", "sharpness", n_boot=100, n_perm=300, seed=1)
    assert (a["rho_low"], a["p_monotone"]) == (b["rho_low"], b["p_monotone"])
    assert c["p_monotone"] == a["p_monotone"]


# --- the table -----------------------------------------------------------------------------


def test_table_corrects_every_p_value_together():
    runs = {
        "batch_size": sweep(monotone, rng=8),
        "lr": sweep(noise, rng=9, knob="lr", values=(0.01, 0.03, 0.1, 0.3)).rename(
            columns={"sharpness": "size"}
        ),
    }
    runs["lr"]["sharpness"] = np.random.default_rng(10).normal(size=len(runs["lr"]))
    runs["batch_size"]["size"] = np.random.default_rng(11).normal(size=len(runs["batch_size"]))
    table = vd.verdict_table(runs, quantities=("sharpness", "size"), **FAST)
    assert len(table) == 4 and table.attrs["n_comparisons"] == 8
    assert (table["n_comparisons"] == 8).all()
    raw = np.r_[table["p_monotone"], table["p_kruskal"]]
    np.testing.assert_allclose(
        np.r_[table["p_monotone_holm"], table["p_kruskal_holm"]], vd.holm(raw)
    )
    got = table.set_index(["knob", "quantity"])["verdict"]
    assert got[("batch_size", "sharpness")] == "up"
    assert table.attrs["rule"] == vd.RULE


def test_table_warns_when_n_perm_cannot_reach_significance():
    with pytest.warns(UserWarning, match="n_perm"):
        vd.verdict_table(
            {"batch_size": sweep(monotone)}, quantities=("sharpness",), n_boot=50, n_perm=30
        )


def test_missing_column_raises():
    with pytest.raises(KeyError, match="real_gap"):
        vd.knob_effect(sweep(monotone), "batch_size", "real_gap")


# --- claims --------------------------------------------------------------------------------


def crafted_table(rows):
    table = pd.DataFrame(
        [
            {"knob": k, "quantity": q, "verdict": v, "rho": rho, "rho_low": rho - 0.2, "rho_high": rho + 0.2,
             "p_monotone_holm": p, "p_kruskal_holm": 0.5, "n_runs": 20, "n_values": 4}
            for k, q, v, rho, p in rows
        ]
    )  # fmt: skip
    table.attrs["alpha"] = 0.05
    return table


def test_claims_are_marked_as_paper_or_hypothesis():
    assert {c.source for c in cl.CLAIMS} == {"paper", "hypothesis"}
    assert len({c.id for c in cl.CLAIMS}) == len(cl.CLAIMS)
    hyp = {(c.knob, c.quantity): c.expected for c in cl.CLAIMS if c.source == "hypothesis"}
    assert hyp[("batch_size", "sharpness")] == "up" and hyp[("lr", "sharpness")] == "down"
    assert hyp[("label_noise", "size")] == "up" and hyp[("dropout", "real_gap")] == "down"


def test_claim_verdicts_supported_contradicted_inconclusive():
    table = crafted_table(
        [
            ("batch_size", "sharpness", "up", 0.7, 0.001),
            ("batch_size", "size", "no clear change", 0.1, 0.8),
            ("lr", "sharpness", "up", 0.6, 0.002),  # hypothesis says down
            ("lr", "size", "no clear change", 0.0, 1.0),
            ("weight_decay", "size", "non-monotone", 0.05, 0.9),
            ("weight_decay", "sharpness", "no clear change", 0.0, 1.0),
            ("dropout", "sharpness", "no clear change", 0.1, 0.7),
            ("dropout", "size", "no clear change", -0.1, 0.7),
            ("dropout", "real_gap", "not enough data", math.nan, math.nan),
        ]
    )
    got = cl.claim_verdicts(table).set_index("id")
    assert got.loc["hyp.batch_size.sharpness", "verdict"] == "supported"
    assert "rho 0.70 [0.50, 0.90]" in got.loc["hyp.batch_size.sharpness", "because"]
    assert "Holm p 0.001" in got.loc["hyp.batch_size.sharpness", "because"]
    assert got.loc["hyp.lr.sharpness", "verdict"] == "contradicted"
    assert got.loc["hyp.weight_decay.size", "verdict"] == "inconclusive"
    assert got.loc["hyp.dropout.real_gap", "verdict"] == "inconclusive"
    assert got.loc["hyp.init_scale.size", "verdict"] == "inconclusive"
    assert "not in the verdict table" in got.loc["hyp.init_scale.size", "because"]
    # The paper's "acts on one or both factors": one factor moving is enough, either way.
    assert got.loc["paper.batch_size.acts_on_factors", "verdict"] == "supported"
    assert got.loc["paper.lr.acts_on_factors", "verdict"] == "supported"
    # Nothing significant is absence of evidence, never a contradiction.
    assert got.loc["paper.dropout.acts_on_factors", "verdict"] == "inconclusive"
    assert got.loc["paper.weight_decay.acts_on_factors", "verdict"] == "inconclusive"
    assert (got.loc[got["source"] == "paper", "verdict"] != "contradicted").all()
    assert got.loc["paper.dpsgd.flatter", "verdict"] == "inconclusive"  # no comparison given


def test_claim_verdicts_from_paired_comparisons():
    r = np.random.default_rng(12)
    ssgd = r.normal(10, 1, 10)
    comparisons = {
        "sharpness": vd.paired_comparison(ssgd, ssgd - 2 + r.normal(0, 0.1, 10), n_boot=500),
        "real_gap": vd.paired_comparison(ssgd, ssgd + 2 + r.normal(0, 0.1, 10), n_boot=500),
        "size": vd.paired_comparison(ssgd, ssgd * (1 + r.normal(0, 0.005, 10)), n_boot=500),
    }
    got = cl.claim_verdicts(crafted_table([]), comparisons=comparisons).set_index("id")
    assert got.loc["paper.dpsgd.flatter", "verdict"] == "supported"
    assert got.loc["paper.dpsgd.gap", "verdict"] == "contradicted"
    assert got.loc["paper.dpsgd.same_size", "verdict"] == "supported"
    assert "10 seed pairs" in got.loc["paper.dpsgd.flatter", "because"]
    # A noisy size difference is neither the same nor different.
    comparisons["size"] = vd.paired_comparison(ssgd, ssgd + r.normal(0, 3, 10), n_boot=500)
    got = cl.claim_verdicts(crafted_table([]), comparisons=comparisons).set_index("id")
    assert got.loc["paper.dpsgd.same_size", "verdict"] == "inconclusive"
    # A small but significant difference is still the same size (an equivalence margin) ...
    comparisons["size"] = vd.paired_comparison(ssgd, ssgd * 1.05 + r.normal(0, 0.01, 10))
    got = cl.claim_verdicts(crafted_table([]), comparisons=comparisons).set_index("id")
    assert comparisons["size"]["p"] < 0.01
    assert got.loc["paper.dpsgd.same_size", "verdict"] == "supported"
    # ... and only an interval wholly outside the margin contradicts it.
    comparisons["size"] = vd.paired_comparison(ssgd, ssgd * 1.3 + r.normal(0, 0.01, 10))
    got = cl.claim_verdicts(crafted_table([]), comparisons=comparisons).set_index("id")
    assert got.loc["paper.dpsgd.same_size", "verdict"] == "contradicted"


# --- paired comparison ---------------------------------------------------------------------


def test_paired_comparison_known_shift():
    r = np.random.default_rng(13)
    a = r.normal(5, 2, 10)  # large spread between seeds, small within a pair
    b = a + 1 + r.normal(0, 0.2, 10)
    c = vd.paired_comparison(a, b, n_boot=500)
    assert c["n_pairs"] == 10 and c["exact"]  # 2^10 <= 2000: all sign patterns
    assert c["diff_low"] < 1 < c["diff_high"] and c["diff_low"] > 0.5
    assert c["p"] == pytest.approx(2 / 1024)  # only the observed signs and their mirror
    assert c["rel_diff"] == pytest.approx(np.mean(b - a) / abs(np.mean(a)))


def test_paired_comparison_no_shift():
    r = np.random.default_rng(14)
    a = r.normal(5, 2, 12)
    b = a + r.normal(0, 0.2, 12)
    c = vd.paired_comparison(a, b, n_boot=500, n_perm=1000)
    assert not c["exact"]  # 2^12 > 1000: random sign flips
    assert c["diff_low"] < 0 < c["diff_high"] and c["p"] > 0.1


def test_paired_comparison_aligns_series_by_seed_and_drops_non_finite():
    a = pd.Series([1.0, 2.0, 3.0, 4.0, math.nan], index=[0, 1, 2, 3, 4])
    b = pd.Series([5.0, 4.0, 3.0, 2.0, 1.0], index=[4, 3, 2, 1, 0])
    c = vd.paired_comparison(a, b, n_boot=100)
    assert c["n_pairs"] == 4 and c["n_dropped"] == 1 and c["seeds"] == [0, 1, 2, 3]
    assert c["diff"] == pytest.approx(np.mean([1 - 1, 2 - 2, 3 - 3, 4 - 4]))
    # Five pairs cannot reach p < 0.05 however large the shift.
    c = vd.paired_comparison(np.zeros(5), np.full(5, 10.0) + np.arange(5), n_boot=100)
    assert c["p_min"] == pytest.approx(2 / 32) and c["p"] == pytest.approx(2 / 32)
