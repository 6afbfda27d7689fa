"""The analysis's guards (awbench/analysis/guards.py, memory.py): the Lanczos route's
complement, bad analysis inputs named clearly, and the memory estimate and limit. Each test
injects the fault it guards against."""

import dataclasses
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import awbench as aw
from awbench.analysis import pair_gaps
from awbench.analysis.duality import duality_check
from awbench.analysis.memory import (
    MEMORY_ENV,
    AnalysisMemoryError,
    estimate_bytes,
    memory_limit,
    parse_bytes,
)
from awbench.experiments.experiment import result_of
from awbench.training.run import Run


@pytest.fixture(scope="module")
def smoke_run():
    cfg = aw.Config.preset("smoke").replace(max_epochs=15, seed=1)
    return aw.train(cfg)


@pytest.fixture(scope="module")
def routes(smoke_run):
    """The same 400-weight layer on the dense route and, forced, on the Lanczos route."""
    return aw.analyze(smoke_run), aw.analyze(smoke_run, dense_max=100, lanczos_k=30)


def _with_data(run, **changes):
    return Run(
        run.config,
        run.model,
        dataclasses.replace(run.data, **changes),
        run.history,
        run.status,
    )


# --- item 2: the Lanczos route keeps its complement out of the per-direction split -----------


def test_complement_is_reported_apart_and_sums_to_the_pair_gap(routes):
    dense, lz = routes
    assert dense.hessian_method == "dense" and lz.hessian_method == "lanczos+complement"
    assert dense.complement_gap == 0.0
    assert lz.complement_gap != 0.0 and "complement_gap" in lz.scalars()
    for an in routes:
        assert abs(an.sharp_gap + an.flat_gap + an.complement_gap - an.pair_gap) <= 1e-12
        assert an.identity_error <= 1e-12
    # The directions table holds the computed eigen-directions only: no complement row.
    d = lz.directions
    assert len(d) == 30 and d["lam"].notna().all()
    assert sorted(d["eigen_index"]) == list(range(30)) and list(d["rank"]) == list(range(30))
    assert bool((np.diff(d["sigma_g"].to_numpy()) <= 0).all())
    assert lz.mean_term + lz.estimated_gap + lz.complement_gap == pytest.approx(
        lz.pair_gap, abs=1e-12
    )


def test_dense_and_lanczos_routes_agree_on_a_small_layer(routes):
    dense, lz = routes
    assert lz.pair_gap == pytest.approx(dense.pair_gap, abs=1e-14)
    # Basis-free totals: the same numbers on both routes.
    assert lz.sharpness == pytest.approx(dense.sharpness, rel=1e-12)
    assert lz.size == pytest.approx(dense.size, rel=1e-12)
    # ... and they are the traces sum_n sigma^2 over the complete (dense) basis.
    assert dense.sharpness == pytest.approx(float((dense.directions.sigma_g**2).sum()), rel=1e-10)
    assert dense.size == pytest.approx(float((dense.directions.sigma_w**2).sum()), rel=1e-10)
    # The top-10 split (10 < 30 computed directions): the sharpest directions are among the
    # computed ones, so sharp_gap agrees; the dense flat part is flat + complement here.
    top = set(dense.directions["lam"][:10].round(8))
    assert top <= set(lz.directions["lam"].round(8))
    assert lz.sharp_gap == pytest.approx(dense.sharp_gap, rel=1e-7, abs=1e-12)
    assert lz.flat_gap + lz.complement_gap == pytest.approx(dense.flat_gap, rel=1e-7, abs=1e-12)
    assert lz.lam_max == pytest.approx(dense.lam_max, rel=1e-10)


# --- item 4: bad inputs that looked fine -------------------------------------------------------


@pytest.mark.parametrize("n_sharp", [-5, 0, 2.5, True, "3"])
def test_analyze_rejects_a_bad_n_sharp(smoke_run, n_sharp):
    with pytest.raises(ValueError, match=rf"n_sharp={n_sharp!r} is not allowed: expected an int"):
        aw.analyze(smoke_run, n_sharp=n_sharp)


def test_analyze_rejects_an_unknown_pairing(smoke_run):
    with pytest.raises(ValueError, match=r"pairing='bogus' is not allowed: .*'input'.*'random'"):
        aw.analyze(smoke_run, pairing="bogus")


@pytest.mark.parametrize("where", ["x_test", "x_train"])
def test_non_finite_inputs_fail_the_analysis_clearly(smoke_run, where):
    x = getattr(smoke_run.data, where).clone()
    x[3, 0] = float("nan")
    x[7, 1] = float("inf")
    run = _with_data(smoke_run, **{where: x})
    with pytest.raises(ValueError, match=rf"{where} has non-finite values .* 2 rows \[3, 7\]"):
        aw.analyze(run)
    res = result_of(run)  # what a sweep stores: failed, with the reason, not NaN as done
    assert res.status == "failed" and f"{where} has non-finite values" in res.reason


def test_duality_check_with_unequal_rows_names_both_lengths(smoke_run):
    model, data = smoke_run.model.double(), smoke_run.data
    x_test, x_train = data.x_test.double()[:5], data.x_train.double()[:7]
    with pytest.raises(ValueError, match="x_test has 5 rows and x_train 7"):
        duality_check(model, "fc2", x_test, x_train)
    assert duality_check(model, "fc2", x_test, x_train[:5]).shape == (5,)


# --- item 18: memory -----------------------------------------------------------------------


def test_analysis_over_its_memory_limit_is_refused_with_the_estimate(smoke_run, monkeypatch):
    with pytest.raises(AnalysisMemoryError, match=r"would need about .* GiB .*memory_limit"):
        aw.analyze(smoke_run, memory_limit=1000)
    assert issubclass(AnalysisMemoryError, ValueError)  # a sweep records it as failed
    monkeypatch.setenv(MEMORY_ENV, "2K")
    assert memory_limit() == 2048
    res = result_of(smoke_run)
    assert res.status == "failed" and "would need about" in res.reason and MEMORY_ENV in res.reason
    monkeypatch.delenv(MEMORY_ENV)
    assert aw.analyze(smoke_run, memory_limit=2**30).identity_error <= 1e-12


def test_memory_limit_parsing_and_the_samples_x_width2_estimate():
    assert parse_bytes("32G") == 32 * 2**30 and parse_bytes("1.5e9") == 1_500_000_000
    for bad in ("lots", "-1G", "0", "inf"):
        with pytest.raises(ValueError, match=MEMORY_ENV):
            parse_bytes(bad)
    with pytest.raises(ValueError, match="memory_limit=0"):
        memory_limit(0)
    # A 200x200 layer over 60k training samples: G_k alone would be ~19 GB; the Lanczos route
    # keeps no G_k, only the layer's inputs and outputs and the downstream graph per sample.
    parts = estimate_bytes(60_000, 10_000, 200, 200, "lanczos+complement", 100, 4000.0)
    assert "per-sample output Hessians" not in parts
    assert parts["downstream graph"] == 60_000 * 4000
    assert parts["layer inputs and outputs"] == 60_000 * (200 + 3 * 200) * 8
    assert parts["projection blocks"] <= 2**26  # pairs x P is contracted in blocks only
    assert sum(parts.values()) < 2 * 2**30
    # Dense route: G_k and the Hessian's factors are built a chunk of samples at a time.
    dense = estimate_bytes(10_000, 1_000, 10, 513, "dense", 5130)
    assert dense["Hessian factors"] + dense["per-sample output Hessians"] <= 2**28
    assert dense["Hessian and eigenvectors"] >= 3 * 5130**2 * 8


@pytest.mark.parametrize("route", [{}, {"dense_max": 100, "lanczos_k": 30}])
def test_blocks_of_pairs_give_the_unblocked_numbers(smoke_run, monkeypatch, route):
    whole = aw.analyze(smoke_run, **route)
    monkeypatch.setattr(pair_gaps, "pair_block", lambda n_weights, *block_bytes: 7)
    blocked = aw.analyze(smoke_run, **route)
    for k, v in whole.scalars().items():
        if isinstance(v, float) and k not in ("identity_error", "duality_error"):
            assert blocked.scalars()[k] == pytest.approx(v, rel=1e-12, abs=1e-15), k
    assert np.allclose(blocked.directions["contribution"], whole.directions["contribution"])
    assert torch.allclose(blocked.dual, whole.dual, rtol=0, atol=0)


_PEAK = textwrap.dedent(
    """
    import json, resource, torch
    import awbench as aw
    torch.set_num_threads(1)
    cfg = aw.Config(dataset="teacher", n_train=100, n_test=1000, widths=(200, 200),
                    layer="fc2", max_epochs=1)
    run = aw.train(cfg)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    an = aw.analyze(run, lanczos_k=20)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"mb": (after - before) / 1024, "method": an.hessian_method,
                      "n_pairs": an.n_pairs, "n_weights": an.n_weights}))
    """
)


@pytest.mark.slow
def test_peak_memory_does_not_grow_as_pairs_x_weights():
    """1000 pairs x 40k weights: one such float64 array is 320 MB, and an early version held
    five of them at once (1.6 GB). Rank-one factors keep the analysis's peak (95 MB here,
    with the Lanczos vectors) well under one."""
    out = subprocess.run(
        [sys.executable, "-c", _PEAK], capture_output=True, text=True, check=True, timeout=600
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["method"] == "lanczos+complement" and got["n_pairs"] * got["n_weights"] == 4e7
    assert got["mb"] < 200, got
