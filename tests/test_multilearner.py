"""Multi-learner training: SSGD, DPSGD and local SGD against plain SGD and known identities."""

import math

import pytest
import torch

import awbench as aw
from awbench.config import ACTIVATIONS, ConfigError
from awbench.nn.engine import mlp_gradients
from awbench.training.multilearner import Learners, mixing_matrix, shard_positions

ALGORITHMS = ("ssgd", "dpsgd", "local_sgd")
TOPOLOGIES = ("ring", "full", "torus", "gossip")


@pytest.fixture(scope="module")
def smoke():
    cfg = aw.Config.preset("smoke").replace(dtype="float64", max_epochs=4)
    return cfg, aw.load_data(cfg)


def max_param_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    with torch.no_grad():
        return max(float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters()))


# --- equivalences with single-learner SGD --------------------------------------------------

VARIANTS = {
    "plain": {},
    # 400 samples / batch 30: a short last batch; decay and momentum act per step
    "decay-momentum-ragged": {"weight_decay": 0.01, "momentum": 0.9, "batch_size": 30},
    "bias-tanh-dropout": {
        "bias": True,
        "activation": "tanh",
        "dropout": 0.2,
        "weight_decay": 0.01,
        "weight_decay_mode": "squared",
        "batch_size": 30,
    },
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_one_learner_equals_plain_sgd(smoke, variant):
    cfg, data = smoke
    cfg = cfg.replace(**VARIANTS[variant])
    ref = aw.train(cfg, data=data)
    for algorithm in ALGORITHMS:
        run = aw.train(cfg.replace(algorithm=algorithm, local_steps=3), data=data)
        assert max_param_diff(run.model, ref.model) <= 1e-12, algorithm
        for col in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert (run.history[col] - ref.history[col]).abs().max() <= 1e-12, (algorithm, col)
        assert run.status == ref.status and run.extras["consensus_distance"] == 0.0


@pytest.mark.parametrize(
    "n, b, extra",
    [
        (4, 10, {}),  # 400 = 10 steps of 40
        (3, 7, {"weight_decay": 0.01, "momentum": 0.5}),  # 400 = 19 * 21 + 1: the last step has
        (8, 25, {"label_noise": 0.1}),  # one sample (two learners empty); 444 samples
    ],
)
def test_ssgd_equals_single_learner_sgd_with_n_times_the_batch(smoke, n, b, extra):
    cfg, _ = smoke
    cfg = cfg.replace(**extra)
    data = aw.load_data(cfg)
    ref = aw.train(cfg.replace(batch_size=n * b), data=data)
    run = aw.train(cfg.replace(algorithm="ssgd", n_learners=n, batch_size=b), data=data)
    assert run.extras["effective_batch"] == n * b
    assert run.extras["steps_per_epoch"] == math.ceil(len(data.y_train) / (n * b))
    assert max_param_diff(run.model, ref.model) <= 1e-12
    assert (run.history["train_loss"] - ref.history["train_loss"]).abs().max() <= 1e-12
    assert (run.history["consensus"] == 0).all()  # the learners stay identical


def test_dpsgd_full_and_local_sgd_every_step_equal_ssgd(smoke):
    cfg, data = smoke  # 400 samples, 4 x 10: every learner has a full batch at every step
    base = cfg.replace(
        algorithm="ssgd", n_learners=4, batch_size=10, momentum=0.5, weight_decay=0.01
    )
    ssgd = aw.train(base.replace(algorithm="ssgd"), data=data)
    full = aw.train(base.replace(algorithm="dpsgd", topology="full"), data=data)
    local = aw.train(base.replace(algorithm="local_sgd", local_steps=1), data=data)
    assert max_param_diff(full.model, ssgd.model) <= 1e-12
    assert max_param_diff(local.model, ssgd.model) <= 1e-12


# --- the vectorised gradient ----------------------------------------------------------------


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_batched_gradients_equal_mlp_gradients_per_learner(activation):
    cfg = aw.Config(
        widths=(7, 6, 5),
        bias=True,
        activation=activation,
        dtype="float64",
        n_learners=3,
        algorithm="dpsgd",
    )
    model = aw.MLP(4, cfg.widths, 3, activation, bias=True).double()
    learners = Learners(cfg, model)
    gen = torch.Generator().manual_seed(0)
    learners.flat.add_(0.3 * torch.randn(learners.flat.shape, generator=gen, dtype=torch.float64))
    x = torch.randn(3, 9, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(3, (3, 9), generator=gen)
    valid = torch.ones(3, 9, dtype=torch.bool)
    valid[1, 5:] = False  # a short batch
    valid[2] = False  # an empty one
    grad = learners.gradients(x, y, valid)
    for i in range(3):
        ref_model = aw.MLP(4, cfg.widths, 3, activation, bias=True).double()
        with torch.no_grad():
            for p, v in zip(ref_model.parameters(), learners.params):
                p.copy_(v[i])
        keep = valid[i]
        if keep.any():
            ref = torch.cat(
                [g.reshape(-1) for g in mlp_gradients(ref_model, x[i][keep], y[i][keep])]
            )
        else:
            ref = torch.zeros_like(grad[i])
        torch.testing.assert_close(grad[i], ref, rtol=0, atol=1e-14)


# --- data shards ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "N, n, b", [(400, 4, 10), (400, 3, 7), (1297, 8, 25), (10, 4, 5), (7, 7, 1)]
)
def test_shards_partition_the_epoch_and_steps_take_consecutive_blocks(N, n, b):
    pos, valid = shard_positions(N, n, b)
    assert pos.shape == valid.shape == (math.ceil(N / (n * b)), n, b)
    taken = pos[valid]
    assert sorted(taken.tolist()) == list(range(N))  # a partition of the epoch
    for k in range(pos.shape[0]):
        step = sorted(pos[k][valid[k]].tolist())
        assert step == list(range(k * n * b, min(N, (k + 1) * n * b)))  # SGD's batch n*b
    for r in range(n):
        assert (pos[:, r][valid[:, r]] % n == r).all()  # learner r: positions r, r+n, ...


# --- DPSGD mixing ---------------------------------------------------------------------------


def _sizes(topology):
    return [1, 4, 9, 16, 25] if topology == "torus" else list(range(1, 13))


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_mixing_matrix_is_symmetric_doubly_stochastic(topology):
    gen = torch.Generator().manual_seed(0)
    for n in _sizes(topology):
        for _ in range(5 if topology == "gossip" else 1):
            M = mixing_matrix(topology, n, gen)
            assert M.shape == (n, n) and M.dtype == torch.float64
            assert (M >= 0).all()
            torch.testing.assert_close(M.sum(0), torch.ones(n, dtype=M.dtype), rtol=0, atol=1e-15)
            torch.testing.assert_close(M.sum(1), torch.ones(n, dtype=M.dtype), rtol=0, atol=1e-15)
            assert torch.equal(M, M.T)
            if topology != "gossip" and n > 1:  # connected: mixing contracts to consensus
                second = torch.linalg.eigvalsh(M).abs().sort(descending=True).values[1]
                assert second < 1 - 1e-9, (topology, n)


def test_mixing_matrix_neighbours():
    ring = mixing_matrix("ring", 6)
    assert ((ring > 0).sum(1) == 3).all() and ring[0, 1] == ring[0, 5] == ring[0, 0] == 1 / 3
    torus = mixing_matrix("torus", 9)
    assert ((torus > 0).sum(1) == 5).all() and torus[0, 1] == torus[0, 3] == torus[0, 6] == 0.2
    gossip = mixing_matrix("gossip", 7, torch.Generator().manual_seed(1))
    assert sorted((gossip == 1).sum(1).tolist()).count(1) == 1  # one learner left unmatched
    assert ((gossip == 0.5).sum(1) == 2).sum() == 6  # three pairs


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_average_of_learners_takes_the_average_gradient_step(topology):
    n = 4
    cfg = aw.Config(
        dtype="float64",
        n_learners=n,
        algorithm="dpsgd",
        topology=topology,
        momentum=0.0,
        weight_decay=0.0,
        lr=0.3,
    )
    model = aw.MLP(5, cfg.widths, 3).double()
    learners = Learners(cfg, model)
    gen = torch.Generator().manual_seed(2)
    learners.flat.add_(0.2 * torch.randn(learners.flat.shape, generator=gen, dtype=torch.float64))
    for _ in range(3):
        x = torch.randn(n, 8, 5, generator=gen, dtype=torch.float64)
        y = torch.randint(3, (n, 8), generator=gen)
        before = learners.flat.clone()
        grad = learners.gradients(x, y)
        learners.step(x, y)
        expected_mean = before.mean(0) - cfg.lr * grad.mean(0)
        torch.testing.assert_close(learners.flat.mean(0), expected_mean, rtol=0, atol=1e-14)
        # ... while the learners themselves did not all take that step (mixing is local)
        if topology != "full":
            assert not torch.allclose(learners.flat, expected_mean.expand_as(learners.flat))
        else:
            torch.testing.assert_close(learners.flat, expected_mean.expand_as(learners.flat))
        # and DPSGD is exactly: mix after the local steps
        M = mixing_matrix(topology, n) if topology != "gossip" else None
        if M is not None:
            torch.testing.assert_close(
                learners.flat, M @ (before - cfg.lr * grad), rtol=0, atol=1e-14
            )


def test_local_sgd_averages_every_h_steps(smoke):
    cfg, _ = smoke
    cfg = cfg.replace(n_learners=3, algorithm="local_sgd", local_steps=3)
    model = aw.build_model(cfg, 64, 10)
    learners = Learners(cfg, model)
    gen = torch.Generator().manual_seed(3)
    spreads = []
    for _ in range(6):
        x = torch.randn(3, 5, 64, generator=gen, dtype=torch.float64)
        learners.step(x, torch.randint(10, (3, 5), generator=gen))
        spreads.append(learners.consensus_distance())
    assert spreads[0] > 0 and spreads[1] > 0 and spreads[3] > 0 and spreads[4] > 0
    assert spreads[2] == 0 and spreads[5] == 0


# --- runs: history, extras, analysis, determinism, divergence -------------------------------


def test_dpsgd_run_is_the_learner_average_and_feeds_analyze():
    cfg = aw.Config.preset("smoke").replace(
        n_learners=4, algorithm="dpsgd", topology="ring", max_epochs=15
    )
    run = aw.train(cfg)
    assert run.ok and run.epochs == len(run.history) > 0
    assert {"consensus", "learner_train_loss"} <= set(run.history.columns)
    assert (run.history["consensus"] > 0).all()
    assert run.extras["consensus_distance"] == run.history["consensus"].iloc[-1] > 0
    learner_params = run.extras["learner_params"]
    for name, p in run.model.named_parameters():
        assert learner_params[name].shape == (4, *p.shape)
        torch.testing.assert_close(p.detach(), learner_params[name].mean(0))
    an = aw.analyze(run)
    assert an.identity_error <= 1e-10
    assert math.isfinite(an.real_gap) and math.isfinite(an.estimated_gap)


def test_run_experiment_stores_a_multilearner_result():
    cfg = aw.Config.preset("smoke").replace(n_learners=2, algorithm="ssgd", max_epochs=5)
    res = aw.run_experiment(cfg)
    assert res.ok and "consensus" in res.history.columns
    assert res.scalars["identity_error"] <= 1e-10
    again = aw.run_experiment(cfg)
    assert again.cached and again.scalars == res.scalars
    assert isinstance(res.load_run().model, aw.MLP)


def test_same_seed_same_numbers_gossip(smoke):
    cfg, data = smoke
    cfg = cfg.replace(n_learners=5, algorithm="dpsgd", topology="gossip", max_epochs=2)
    a, b = aw.train(cfg, data=data), aw.train(cfg, data=data)
    assert max_param_diff(a.model, b.model) == 0
    c = aw.train(cfg.replace(seed=1), data=data)
    assert max_param_diff(a.model, c.model) > 0


def test_divergence_is_a_status(smoke):
    cfg, data = smoke
    cfg = cfg.replace(n_learners=2, algorithm="dpsgd", lr=1e3, init_scale=100, dtype="float32")
    run = aw.train(cfg, data=data)
    assert run.status == "diverged" and "lr=1000" in run.reason


# --- bad inputs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, field, value, hint",
    [
        ({"n_learners": 0, "algorithm": "ssgd"}, "n_learners", "0", "integer >= 1"),
        ({"n_learners": -2, "algorithm": "dpsgd"}, "n_learners", "-2", "integer >= 1"),
        ({"n_learners": 2.5, "algorithm": "dpsgd"}, "n_learners", "2.5", "integer >= 1"),
        ({"n_learners": 2000, "algorithm": "ssgd"}, "n_learners", "2000", "n_train=1297"),
        (
            {"n_learners": 8, "algorithm": "dpsgd", "topology": "torus"},
            "topology",
            "'torus'",
            "square",
        ),
        (
            {"n_learners": 2, "algorithm": "dpsgd", "topology": "torus"},
            "topology",
            "'torus'",
            "n_learners=2",
        ),
        (
            {"n_learners": 4, "algorithm": "dpsgd", "topology": "star"},
            "topology",
            "'star'",
            "'gossip'",
        ),
        ({"n_learners": 4, "algorithm": "allreduce"}, "algorithm", "'allreduce'", "'dpsgd'"),
        ({"n_learners": 4}, "algorithm", "'sgd'", "n_learners > 1"),
        ({"n_learners": 4, "algorithm": "local_sgd", "local_steps": 0}, "local_steps", "0", ">= 1"),
    ],
)
def test_bad_multilearner_settings_name_field_value_and_what_is_allowed(kwargs, field, value, hint):
    with pytest.raises(ConfigError) as info:
        aw.Config(**kwargs)
    msg = str(info.value)
    assert f"Config.{field}={value}" in msg and "expected" in msg and hint in msg


def test_torus_fits_square_counts_and_other_algorithms_ignore_topology():
    assert aw.Config(n_learners=9, algorithm="dpsgd", topology="torus").n_learners == 9
    assert aw.Config(n_learners=8, algorithm="ssgd", topology="torus").topology == "torus"
    with pytest.raises(ConfigError, match="topology"):
        aw.Config(n_learners=9, algorithm="dpsgd", topology="torus").replace(n_learners=10)
    assert aw.Config(n_learners="4", algorithm="dpsgd").n_learners == 4  # papermill strings


@pytest.mark.parametrize(
    "topology, n, match",
    [
        ("torus", 8, "Config.topology='torus'"),
        ("star", 4, "Config.topology='star'"),
        ("ring", 0, "n_learners=0"),
    ],
)
def test_mixing_matrix_rejects_what_does_not_fit(topology, n, match):
    with pytest.raises(ConfigError, match=match.replace("(", r"\(")):
        mixing_matrix(topology, n)
