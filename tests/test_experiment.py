"""run_experiment: train + analyze, cached by Config.key(), robust to bad cache entries."""

import struct
import warnings

import pytest
import torch

import awbench as aw
from awbench.experiments import experiment


@pytest.fixture()
def cfg():
    return aw.Config.preset("smoke").replace(max_epochs=4, seed=7)


def test_second_call_is_a_cache_hit_with_identical_numbers(cfg):
    first = aw.run_experiment(cfg)
    assert not first.cached and first.ok
    assert first.scalars["identity_error"] <= 1e-10
    again = aw.run_experiment(cfg)
    assert again.cached
    assert again.scalars == first.scalars
    assert again.directions.equals(first.directions)
    assert again.history.equals(first.history)
    # The cached model rebuilds the same analysis.
    an = again.analysis()
    assert an.pair_gap == pytest.approx(first.scalars["pair_gap"], abs=1e-15)


def test_corrupt_cache_entry_is_recomputed(cfg):
    aw.run_experiment(cfg)
    path = experiment._path(cfg)
    path.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="unreadable cache entry"):
        res = aw.run_experiment(cfg)
    assert not res.cached and res.ok
    assert aw.run_experiment(cfg).cached  # rewritten whole


def test_stale_or_foreign_entries_are_not_trusted(cfg):
    res = aw.run_experiment(cfg)
    blob = experiment._encode(res)
    path = experiment._path(cfg)
    torch.save(dict(blob, schema=-1), path)
    assert experiment.load_cached(cfg) is None
    other = cfg.replace(seed=8)
    torch.save(dict(blob, key=other.key()), path)
    assert experiment.load_cached(cfg) is None


def test_divergence_is_a_result_not_an_exception(cfg):
    # (1 - lr * weight_decay) = -2: the weights double in size and flip sign every step.
    bad = cfg.replace(weight_decay=30.0, weight_decay_mode="squared", max_epochs=8)
    res = aw.run_experiment(bad)
    assert res.status == "diverged"
    assert "non-finite" in res.reason
    assert res.directions is None and not res.converged
    assert set(res.scalars) == {"converged", "final_train_loss", "final_train_acc", "epoch_budget"}
    assert res.scalars["converged"] is False and res.scalars["epoch_budget"] == 8
    assert aw.run_experiment(bad).cached


def test_no_temporary_files_left_behind(cfg):
    aw.run_experiment(cfg.replace(seed=9))
    leftovers = [p for p in experiment._path(cfg).parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_a_dead_network_is_recorded_as_failed_with_its_reason(cfg):
    # ReLU units all die without a blow-up (the step losses stay below the divergence bound;
    # lr=500 would be one: diverged)
    dead = cfg.replace(lr=5.0)
    res = aw.run_experiment(dead)
    assert res.status == "failed" and not res.ok
    assert "no test sample could be paired" in res.reason
    assert "real_gap" not in res.scalars and res.scalars["converged"] is False


def _flip_byte_of(path, needle: bytes) -> None:
    """Flip one byte in the middle of ``needle``'s (unique) occurrence in the file ``path``."""
    data = bytearray(path.read_bytes())
    at = data.find(needle)
    assert at >= 0 and data.find(needle, at + 1) < 0
    data[at + len(needle) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_a_weight_or_a_scalar_is_never_served(cfg):
    first = aw.run_experiment(cfg.replace(seed=11))
    path = experiment._path(first.config)
    name, weight = max(first.model_state.items(), key=lambda kv: kv[1].numel())
    clean = path.read_bytes()
    # a bit inside the tensor data region of the zip: torch.load checks no CRC and loads it
    _flip_byte_of(path, weight.contiguous().numpy().tobytes())
    assert not torch.equal(torch.load(path, weights_only=True)["model_state"][name], weight)
    with pytest.warns(UserWarning, match=f"corrupt cache entry {path}"):
        assert experiment.load_cached(first.config) is None
    with pytest.warns(UserWarning, match="does not match its SHA-256"):
        res = aw.run_experiment(first.config)
    assert not res.cached and res.scalars == first.scalars
    assert aw.run_experiment(first.config).cached  # rewritten whole, and verified
    # a bit of a stored scalar (a pickled float, big-endian)
    path.write_bytes(clean)
    _flip_byte_of(path, struct.pack(">d", first.scalars["pair_gap"]))
    with pytest.warns(UserWarning, match="corrupt cache entry"):
        assert experiment.load_cached(first.config) is None


def test_an_entry_without_a_digest_is_stale_said_once(cfg, monkeypatch):
    monkeypatch.setattr(experiment, "_legacy_warned", False)
    res = aw.run_experiment(cfg.replace(seed=12))
    other = aw.run_experiment(cfg.replace(seed=13))
    for r in (res, other):  # as the code before digests wrote them
        torch.save(experiment._encode(r), experiment._path(r.config))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert experiment.load_cached(res.config) is None
        assert experiment.load_cached(other.config) is None
    assert sum("without a payload digest" in str(w.message) for w in seen) == 1
    again = aw.run_experiment(res.config)
    assert not again.cached and again.scalars == res.scalars
    assert aw.run_experiment(res.config).cached
