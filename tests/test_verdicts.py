"""Verdicts: exact p-values against full enumeration and scipy, intervals that cover, planted
effects found, noise not, one verdict for the same runs whatever else is in the table."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from awbench.experiments import claims as cl
from awbench.experiments import verdicts as vd
from awbench.experiments import within_seed as ws

VALUES = (0.0, 0.01, 0.02)


def sweep(means, *, seeds=10, values=VALUES, sd=0.2, rng=0, knob="weight_decay", q="sharpness"):
    """One knob sweep on the log scale: seed offset + means[value] + noise, every run converged."""
    r = np.random.default_rng(rng)
    rows = []
    for s in range(seeds):
        offset = r.normal(0, 1)
        for v, m in zip(values, means):
            rows.append(
                {
                    knob: v,
                    "seed": s,
                    "status": "converged",
                    q: math.exp(offset + m + r.normal(0, sd)),
                }
            )
    return pd.DataFrame(rows)


def brute_force_p(x, y, blocks):
    """Two-sided p of the trend statistic by listing every within-block arrangement."""
    codes = np.searchsorted(np.unique(x), x).astype(float)
    groups = [np.flatnonzero(blocks == b) for b in np.unique(blocks)]
    centred = y.copy()
    for g in groups:
        centred[g] -= y[g].mean()
    observed = abs(sum(codes[g] @ centred[g] for g in groups))
    per_block = [
        [codes[g][list(p)] @ centred[g] for p in itertools.permutations(range(g.size))]
        for g in groups
    ]
    total = hits = 0
    for combo in itertools.product(*per_block):
        total += 1
        hits += abs(sum(combo)) >= observed - 1e-9
    return hits / total


# --- Holm ----------------------------------------------------------------------------------


def test_holm_on_hand_computed_values():
    # sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> max(0.06, 0.04)
    np.testing.assert_allclose(vd.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])


def test_holm_skips_nan_caps_at_one_and_keeps_shape():
    out = vd.holm([0.01, math.nan, 0.04])
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.04])
    assert math.isnan(out[1])
    np.testing.assert_allclose(vd.holm([0.5, 0.6]), [1.0, 1.0])
    assert vd.holm(np.full((2, 2), 0.01)).shape == (2, 2)
    with pytest.raises(ValueError):
        vd.holm([1.5])


# --- the trend test: exact -----------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_trend_p_equals_full_enumeration(seed):
    r = np.random.default_rng(seed)
    x = np.tile([1.0, 2.0, 3.0], 4)
    blocks = np.repeat(np.arange(4), 3)
    y = r.normal(size=12) + 0.5 * x * (seed == 0)
    got = ws.trend_test(x, y, blocks)
    assert got["exact"] and got["n_arrangements"] == 6**4
    assert got["p"] == pytest.approx(brute_force_p(x, y, blocks), abs=1e-12)


def test_exact_trend_p_equals_scipy_permutation_test():
    r = np.random.default_rng(5)
    data = r.normal(size=(5, 3)) + np.array([0.0, 0.4, 0.5])  # 5 seeds x 3 values
    x = np.tile([0.0, 1.0, 2.0], 5)
    got = ws.trend_test(x, data.ravel(), np.repeat(np.arange(5), 3))

    def trend(a, b, c, axis=-1):
        # the contrast -1, 0, 1 summed over seeds; scipy's two-sided p equals |T| >= |t|
        # here because swapping the ends in every seed negates T
        return np.sum(c - a, axis=axis)

    ref = stats.permutation_test(
        tuple(data.T), trend, permutation_type="samples", vectorized=True, n_resamples=10**5
    )
    assert got["exact"] and got["p"] == pytest.approx(ref.pvalue, rel=1e-9)


def test_meet_in_the_middle_equals_direct_enumeration_and_ragged_blocks_work():
    r = np.random.default_rng(7)
    x = np.array([1, 2, 3, 1, 2, 3, 1, 3, 1, 2, 3, 2, 3], dtype=float)
    blocks = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4])
    y = r.normal(size=x.size) + 0.3 * x
    direct = ws.trend_test(x, y, blocks)
    halves = ws.trend_test(x, y, blocks, exact_limit=40)  # forces two halves of the seeds
    assert direct["exact"] and halves["exact"]
    assert halves["p"] == pytest.approx(direct["p"], abs=1e-12)
    assert direct["p"] == pytest.approx(brute_force_p(x, y, blocks), abs=1e-12)


def test_random_draws_only_beyond_the_exact_limit_and_close_to_exact():
    d = sweep((0.0, 0.1, 0.12), seeds=8, sd=0.3, rng=3)
    x, y = d["weight_decay"].to_numpy(), np.log(d["sharpness"].to_numpy())
    blocks = d["seed"].to_numpy()
    exact = ws.trend_test(x, y, blocks)
    drawn = ws.trend_test(x, y, blocks, exact_limit=10, n_perm=50_000, seed=1)
    assert exact["exact"] and not drawn["exact"]
    assert drawn["p_floor"] == pytest.approx(1 / 50_001)
    se = math.sqrt(exact["p"] * (1 - exact["p"]) / 50_000)
    assert abs(drawn["p"] - exact["p"]) < 5 * se + 1 / 50_000


def test_a_perfect_order_in_every_seed_reaches_the_floor():
    x = np.tile([1.0, 2.0, 3.0], 5)
    y = np.tile([0.0, 1.0, 3.0], 5) + np.repeat(np.arange(5.0), 3)
    got = ws.trend_test(x, y, np.repeat(np.arange(5), 3))
    assert got["p"] == pytest.approx(2 / 6**5) and got["p_floor"] == pytest.approx(2 / 6**5)


def test_a_saturating_effect_is_found_with_ten_seeds_but_a_rank_statistic_misses_it_with_five():
    # A big first step then a plateau: the plateau's order is random within each seed.
    ten = sweep((0.0, -1.0, -1.0), seeds=10, rng=4)
    e = vd.knob_effect(ten, "weight_decay", "sharpness")
    assert e["exact"] and e["p_trend"] * 42 / 0.8 < 0.05
    assert vd.classify(e, family=42) == "down"
    assert e["change"] == pytest.approx(math.expm1(-1.0), abs=0.12)


# --- non-monotone, gatekept ----------------------------------------------------------------


def test_a_rise_and_fall_is_non_monotone_and_a_trend_never_is():
    v_shape = sweep((0.0, 1.0, 0.0), seeds=10, rng=5)
    e = vd.knob_effect(v_shape, "weight_decay", "sharpness")
    assert vd.classify(e, family=6) == "non-monotone"
    trend = vd.knob_effect(sweep((0.0, 0.5, 1.0), rng=6), "weight_decay", "sharpness")
    assert vd.classify(trend, family=6) == "up"


def test_the_non_monotone_test_is_exact_for_small_designs():
    r = np.random.default_rng(8)
    data = r.normal(size=(3, 3))  # 3 seeds x 3 values: 216 arrangements
    x = np.tile([1.0, 2.0, 3.0], 3)
    got = ws.nonmonotone_test(x, data.ravel(), np.repeat(np.arange(3), 3))
    centred = data - data.mean(axis=1, keepdims=True)
    observed = np.sum(centred.mean(axis=0) ** 2)
    stats_all = []
    for perms in itertools.product(itertools.permutations(range(3)), repeat=3):
        arranged = np.array([centred[i, list(p)] for i, p in enumerate(perms)])
        stats_all.append(np.sum(arranged.mean(axis=0) ** 2))
    assert got["exact"]
    assert got["p"] == pytest.approx(np.mean(np.array(stats_all) >= observed - 1e-12), abs=1e-9)


def test_the_non_monotone_test_equals_scipys_permutation_test():
    r = np.random.default_rng(22)
    data = r.normal(size=(5, 3)) + np.array([0.0, 0.6, 0.1])
    x = np.tile([1.0, 2.0, 3.0], 5)
    got = ws.nonmonotone_test(x, data.ravel(), np.repeat(np.arange(5), 3))
    centred = data - data.mean(axis=1, keepdims=True)

    def spread(a, b, c, axis=-1):
        return sum(np.mean(v, axis=axis) ** 2 for v in (a, b, c))

    ref = stats.permutation_test(
        tuple(centred.T), spread, permutation_type="samples", vectorized=True,
        n_resamples=10**5, alternative="greater",
    )  # fmt: skip
    assert got["exact"] and got["p"] == pytest.approx(ref.pvalue, rel=1e-9)
    # ten seeds: random draws, within a few standard errors of scipy's own draws
    data = r.normal(size=(10, 3)) + np.array([0.0, 0.5, 0.0])
    x = np.tile([1.0, 2.0, 3.0], 10)
    got = ws.nonmonotone_test(x, data.ravel(), np.repeat(np.arange(10), 3), n_perm=50_000)
    centred = data - data.mean(axis=1, keepdims=True)
    ref = stats.permutation_test(
        tuple(centred.T), spread, permutation_type="samples", vectorized=True,
        n_resamples=50_000, alternative="greater", rng=np.random.default_rng(1),
    )  # fmt: skip
    se = math.sqrt(ref.pvalue * (1 - ref.pvalue) / 50_000) * math.sqrt(2)
    assert not got["exact"] and abs(got["p"] - ref.pvalue) < 5 * se + 1e-4


# --- effect size and words ---------------------------------------------------------------------


def test_end_change_is_the_t_interval_of_the_log_ratios():
    d = sweep((0.0, -0.3, -0.6), seeds=6, rng=9)
    e = vd.knob_effect(d, "weight_decay", "sharpness")
    wide = d.pivot(index="seed", columns="weight_decay", values="sharpness")
    lr = np.log(wide[0.02] / wide[0.0]).to_numpy()
    half = stats.t.ppf(0.975, 5) * lr.std(ddof=1) / math.sqrt(6)
    assert e["change"] == pytest.approx(math.expm1(lr.mean()))
    assert e["change_low"] == pytest.approx(math.expm1(lr.mean() - half))
    assert e["change_high"] == pytest.approx(math.expm1(lr.mean() + half))


def test_end_change_interval_covers_the_true_change_95_percent_of_the_time():
    rng = np.random.default_rng(10)
    hits = 0
    for _ in range(1000):
        d = rng.normal(-0.4, 0.3, 5)
        x = np.repeat([[0.0, 1.0]], 5, axis=0).ravel()
        y = np.exp(np.column_stack([np.zeros(5), d]).ravel())
        c = ws.end_change(x, y, np.repeat(np.arange(5), 2), log=True)
        hits += c["change_low"] <= math.expm1(-0.4) <= c["change_high"]
    assert 0.93 <= hits / 1000 <= 0.97


def test_no_clear_change_needs_an_interval_without_large_changes():
    tight = vd.knob_effect(sweep((0.0, 0.0, 0.0), sd=0.02, rng=11), "weight_decay", "sharpness")
    assert vd.classify(tight, family=42) == "no clear change"
    # A large change with 3 seeds: not significant, and not "no clear change" either.
    few = vd.knob_effect(sweep((0.0, -0.8, -1.0), seeds=3, rng=12), "weight_decay", "sharpness")
    assert few["change"] < -0.4
    verdict = vd.classify(few, family=42)
    assert verdict == "inconclusive"
    words = vd.verdict_words({**few, "verdict": verdict})
    assert words.startswith("inconclusive: -") and "not significant with 3 seeds" in words


def test_words_name_the_change_and_its_interval():
    row = {"verdict": "down", "change": -0.65, "change_low": -0.71, "change_high": -0.58}
    assert vd.verdict_words(row) == "down: -65 % [-71 %, -58 %]"
    assert vd.verdict_words({"verdict": "not enough data", "n_runs": 2, "n_values": 1}) == (
        "not enough data (2 converged runs at 1 values)"
    )


# --- the table -------------------------------------------------------------------------------


def test_a_cell_has_the_same_verdict_in_a_small_and_a_large_table():
    wd = sweep((0.0, -0.5, -0.55), rng=13)
    other = sweep((0.0, 0.0, 0.0), rng=14, knob="lr", values=(0.01, 0.05, 0.1))
    alone = vd.verdict_table({"weight_decay": wd}, ("sharpness",), family=42)
    pooled = vd.verdict_table({"weight_decay": wd, "lr": other}, ("sharpness",), family=42)
    a, b = alone.iloc[0], pooled.set_index("knob").loc["weight_decay"]
    assert a["verdict"] == b["verdict"] == "down" and a["p_trend_adj"] == b["p_trend_adj"]
    assert alone.attrs["family"] == 42 and (pooled["family"] == 42).all()


def test_unconverged_runs_are_left_out_and_counted_by_the_one_rule():
    d = sweep((0.0, 0.5, 1.0), rng=15)
    d["converged"] = pd.Series(True, index=d.index, dtype=object)
    d.loc[0, ["status", "converged", "sharpness"]] = ("max_epochs", False, 1e-9)
    # A row of an older store: no converged value, so its status decides (it did not converge).
    d.loc[1, ["status", "converged"]] = ("max_epochs", None)
    e = vd.knob_effect(d, "weight_decay", "sharpness")
    assert e["n_runs"] == len(d) - 2 and e["left_out_by_status"] == {"max_epochs": 2}


def test_curvature_is_sharpness_over_size_when_a_store_lacks_it():
    d = sweep((0.0, 0.5, 1.0), rng=16).assign(size=2.0)
    e = vd.knob_effect(d, "weight_decay", "curvature")
    assert e["mean_by_value"][0] == pytest.approx(d[d["weight_decay"] == 0]["sharpness"].mean() / 2)


def test_not_enough_data_and_bad_arguments():
    d = sweep((0.0,), values=(0.0,), seeds=5)
    assert (
        vd.classify(vd.knob_effect(d, "weight_decay", "sharpness"), family=1) == "not enough data"
    )
    with pytest.raises(ValueError, match="level=1.5"):
        vd.knob_effect(d, "weight_decay", "sharpness", level=1.5)
    with pytest.raises(ValueError, match="family=0"):
        vd.adjusted({"p_trend": 0.1}, family=0)
    with pytest.raises(KeyError, match="real_gap"):
        vd.knob_effect(d, "weight_decay", "real_gap")


def test_linear_scale_when_a_value_is_not_positive():
    d = sweep((0.0, 0.5, 1.0), rng=17)
    d["sharpness"] = np.log(d["sharpness"])  # can be negative
    e = vd.knob_effect(d, "weight_decay", "sharpness")
    assert e["scale"] == "linear" and e["p_trend"] < 1e-4


# --- claims ----------------------------------------------------------------------------------


def claim_table(effects):
    """A verdict table with planted effects: {(knob, quantity): means}."""
    sweeps = {}
    for (knob, q), means in effects.items():
        frame = sweep(means, knob=knob, q=q, rng=len(sweeps))
        sweeps[knob] = frame if knob not in sweeps else sweeps[knob].merge(frame)
    for frame in sweeps.values():
        for q in ("sharpness", "size", "real_gap"):
            if q not in frame:
                frame[q] = np.exp(np.random.default_rng(99).normal(0, 0.1, len(frame)))
    return vd.verdict_table(sweeps, ("sharpness", "size", "real_gap"), family=42)


def test_claims_supported_contradicted_and_inconclusive_with_holm_over_claims():
    table = claim_table(
        {
            ("batch_size", "sharpness"): (0.0, 0.5, 1.0),  # hypothesis: up
            ("lr", "sharpness"): (0.0, 0.5, 1.0),  # hypothesis: down
            ("weight_decay", "size"): (0.0, -0.02, -0.01),  # nothing
        }
    )
    got = cl.claim_verdicts(table).set_index("id")
    assert got.loc["hyp.batch_size.sharpness", "verdict"] == "supported"
    assert got.loc["hyp.lr.sharpness", "verdict"] == "contradicted"
    assert got.loc["hyp.weight_decay.size", "verdict"] == "inconclusive"
    assert got.loc["paper.batch_size.acts_on_factors", "verdict"] == "supported"
    assert got.loc["paper.weight_decay.acts_on_factors", "verdict"] == "inconclusive"
    assert got.loc["hyp.init_scale.size", "verdict"] == "inconclusive"
    assert "not in the verdict table" in got.loc["hyp.init_scale.size", "because"]
    # Holm over the declared family: every claim counts, an untested one as p = 1
    tested = got["p"].notna()
    np.testing.assert_allclose(
        got.loc[tested, "p_holm"], vd.holm(got["p"].fillna(1.0))[tested.to_numpy()]
    )
    assert got.loc[~tested, "p_holm"].isna().all()
    # "acts on one or both factors" is one test: Bonferroni over its two factors.
    rows = table.set_index(["knob", "quantity"])
    p_two = min(rows.loc[("batch_size", q), "p_trend"] for q in ("sharpness", "size"))
    assert got.loc["paper.batch_size.acts_on_factors", "p"] == pytest.approx(2 * p_two)


def test_dpsgd_claims_from_log_ratio_comparisons_and_a_margin_from_the_sharpness_change():
    r = np.random.default_rng(18)
    ssgd = np.exp(r.normal(0, 0.5, 10))
    sharp = vd.paired_comparison(ssgd, ssgd * 0.6 * np.exp(r.normal(0, 0.02, 10)))
    margin = vd.same_size_margin(sharp)
    assert margin == pytest.approx(math.expm1(abs(math.log(sharp["rel_diff"] + 1)) / 2))
    comparisons = {
        "sharpness": sharp,
        "real_gap": vd.paired_comparison(ssgd, ssgd * 1.5 * np.exp(r.normal(0, 0.02, 10))),
        "size": vd.paired_comparison(ssgd, ssgd * np.exp(r.normal(0, 0.01, 10)), margin=margin),
    }
    empty = vd.verdict_table({}, ())
    got = cl.claim_verdicts(empty, comparisons=comparisons).set_index("id")
    assert got.loc["paper.dpsgd.flatter", "verdict"] == "supported"
    assert got.loc["paper.dpsgd.gap", "verdict"] == "contradicted"
    assert got.loc["paper.dpsgd.same_size", "verdict"] == "supported"
    assert "10 seed pairs" in got.loc["paper.dpsgd.flatter", "because"]
    comparisons["size"] = vd.paired_comparison(ssgd, ssgd * 1.6, margin=margin)
    got = cl.claim_verdicts(empty, comparisons=comparisons).set_index("id")
    assert got.loc["paper.dpsgd.same_size", "verdict"] == "contradicted"


def test_paired_comparison_log_ratio_t_interval_and_t_test():
    r = np.random.default_rng(19)
    a = np.exp(r.normal(1, 0.5, 10))
    b = a * np.exp(0.2 + r.normal(0, 0.05, 10))
    c = vd.paired_comparison(a, b)
    d = np.log(b / a)
    half = stats.t.ppf(0.975, 9) * d.std(ddof=1) / math.sqrt(10)
    assert c["p"] == pytest.approx(stats.ttest_rel(np.log(b), np.log(a)).pvalue)
    assert c["rel_diff"] == pytest.approx(math.expm1(d.mean()))
    assert c["rel_low"] == pytest.approx(math.expm1(d.mean() - half))
    assert c["rel_high"] == pytest.approx(math.expm1(d.mean() + half))


def test_equivalence_is_two_one_sided_t_tests_and_its_coverage_holds():
    r = np.random.default_rng(21)
    a = np.exp(r.normal(0, 0.5, 12))
    b = a * np.exp(r.normal(0.01, 0.02, 12))
    c = vd.paired_comparison(a, b, margin=0.05)
    d = np.log(b / a)
    se = d.std(ddof=1) / math.sqrt(12)
    bound = math.log1p(0.05)
    truth = max(stats.t.sf((d.mean() + bound) / se, 11), stats.t.cdf((d.mean() - bound) / se, 11))
    assert c["p_equivalent"] == pytest.approx(truth) and c["p_equivalent"] < 0.05
    # at the margin itself the equivalence test rejects at most 5 % of the time
    rejected = 0
    for _ in range(2000):
        x = np.exp(r.normal(0, 0.5, 8))
        y = x * np.exp(bound + r.normal(0, 0.05, 8))
        rejected += vd.paired_comparison(x, y, margin=0.05)["p_equivalent"] < 0.05
    assert rejected / 2000 <= 0.06


def test_cross_run_fit_recovers_planted_slopes_and_clusters_by_seed():
    r = np.random.default_rng(20)
    rows = []
    for seed in range(10):
        for _ in range(8):
            s, z = np.exp(r.normal(0, 0.5)), np.exp(r.normal(0, 0.5))
            gap = 0.3 * s**0.6 * z**0.4 * np.exp(r.normal(0, 0.02))
            rows.append(
                {"seed": seed, "status": "converged", "real_gap": gap, "sharpness": s, "size": z}
            )
    fit = cl.cross_run_fit(pd.DataFrame(rows))
    assert fit["n_runs"] == 80 and fit["n_seeds"] == 10
    assert fit["b_sharpness_low"] < 0.6 < fit["b_sharpness_high"]
    assert fit["b_size_low"] < 0.4 < fit["b_size_high"] and fit["r2"] > 0.95
    table = vd.verdict_table({}, ())
    got = cl.claim_verdicts(table, across_runs=fit).set_index("id")
    assert got.loc["paper.flatter_smaller", "verdict"] == "supported"
    assert "c_eff" in got.loc["paper.flatter_smaller", "because"]
