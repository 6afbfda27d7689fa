"""Ground truth for the duality itself: exactness, the minimal solution, pairing rules."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import awbench as aw
from awbench.analysis.checks import dual_errors, family_sweep, pair_activities, scaling_sweep
from awbench.analysis.duality import (
    ZeroActivityError,
    augment,
    layer_matrix,
    pair_samples,
    per_sample_weights,
)
from awbench.nn.mlp import MLP, float64_model


def random_mlp(depth, activation, bias, seed, n_in=9, n_out=4):
    torch.manual_seed(seed)
    widths = tuple(int(w) for w in torch.randint(8, 16, (depth - 1,)))
    return MLP(n_in, widths, n_out, activation, bias).double().eval()


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
@pytest.mark.parametrize("bias", [False, True])
def test_duality_is_exact_at_every_layer(depth, activation, bias):
    for seed in range(3):
        model = random_mlp(depth, activation, bias, seed)
        gen = torch.Generator().manual_seed(100 + seed)
        x_test = torch.randn(30, 9, generator=gen, dtype=torch.float64)
        x_train = torch.randn(30, 9, generator=gen, dtype=torch.float64)
        for layer in model.layer_names:
            err = aw.duality_check(model, layer, x_test, x_train)
            assert err.shape == (30,)
            zero = (aw.layer_inputs(model, layer, x_train) == 0).all(1) & (not bias)
            assert torch.equal(torch.isnan(err), zero)  # only dead activities lack a dual
            assert int((~zero).sum()) >= 5
            assert float(err[~zero].max()) <= 1e-12, (layer, float(err[~zero].max()))


def test_duality_check_sees_a_wrong_weight_change():
    model = random_mlp(3, "relu", False, 0)
    x_test, x_train = torch.randn(5, 9).double(), torch.randn(5, 9).double()
    a_tr = aw.layer_inputs(model, "fc2", x_train)
    a_te = aw.layer_inputs(model, "fc2", x_test)
    dW = aw.dual_weights(model.fc2.weight.detach(), a_tr, a_te)
    with torch.no_grad():
        direct = model(x_test)
        with per_sample_weights(model, "fc2", 0.5 * dW):
            half = model(x_train)
    assert float((half - direct).abs().max()) > 1e-3


def test_dual_weights_formula_and_minimal_norm():
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    a = torch.randn(20, 5, generator=gen, dtype=torch.float64)
    a2 = torch.randn(20, 5, generator=gen, dtype=torch.float64)
    dW = aw.dual_weights(W, a, a2)
    assert dW.shape == (20, 6, 5)
    # Duality condition dW a = W da, pair by pair.
    assert torch.allclose(torch.einsum("koi,ki->ko", dW, a), (a2 - a) @ W.T, atol=1e-13)
    # |dW*|_F = |W da| / |a|
    assert torch.allclose(dW.flatten(1).norm(dim=1), ((a2 - a) @ W.T).norm(dim=1) / a.norm(dim=1))
    # Every member of the general family is exact and no smaller.
    M = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    general = aw.general_dual_weights(W, a, a2, M)
    assert torch.allclose(torch.einsum("koi,ki->ko", general, a), (a2 - a) @ W.T, atol=1e-12)
    assert bool((general.flatten(1).norm(dim=1) >= dW.flatten(1).norm(dim=1) - 1e-12).all())
    assert float((general - dW).abs().max()) > 1e-3


def test_dual_weights_scale_linearly_with_the_layer():
    gen = torch.Generator().manual_seed(1)
    W = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    a, a2 = (
        torch.randn(7, 3, generator=gen, dtype=torch.float64),
        torch.randn(7, 3, generator=gen, dtype=torch.float64),
    )
    assert torch.allclose(aw.dual_weights(2.5 * W, a, a2), 2.5 * aw.dual_weights(W, a, a2))


def test_bias_by_augmentation_moves_the_bias_too():
    model = random_mlp(2, "tanh", True, 3)
    x, x2 = torch.randn(8, 9).double(), torch.randn(8, 9).double()
    a, a2 = augment(aw.layer_inputs(model, "fc1", x)), augment(aw.layer_inputs(model, "fc1", x2))
    dW = aw.dual_weights(layer_matrix(model.fc1), a, a2)
    assert dW.shape == (8, model.fc1.out_features, 10)
    assert float(dW[:, :, -1].abs().max()) > 0  # the bias column changes


def test_zero_activity_is_reported_not_divided_by():
    W = torch.randn(3, 4).double()
    a = torch.randn(5, 4).double()
    a[2] = 0
    with pytest.raises(ZeroActivityError, match=r"rows \[2\]"):
        aw.dual_weights(W, a, torch.randn(5, 4).double())


def test_shape_mismatch_is_explained():
    with pytest.raises(ValueError, match="shapes do not fit"):
        aw.dual_weights(torch.randn(3, 4), torch.randn(5, 4), torch.randn(6, 4))


def test_layer_inputs_uses_hooks_and_restores_mode():
    model = MLP(5, (6, 7), 3, dropout=0.5).double()
    model.train()
    x = torch.randn(4, 5).double()
    a = aw.layer_inputs(model, "fc3", x)
    assert model.training  # mode restored
    expected = model.act(model.fc2(model.act(model.fc1(x))))  # eval: dropout is identity
    assert torch.allclose(a, expected)
    assert torch.equal(aw.layer_inputs(model, "fc1", x), x)
    with pytest.raises(ValueError, match="not a Linear layer"):
        aw.layer_inputs(model, "act", x)


# --- pairing -------------------------------------------------------------------------------


def brute_force_nearest(x_te, y_te, x_tr, y_tr, clean):
    out = []
    for i in range(len(x_te)):
        cand = [j for j in range(len(x_tr)) if y_tr[j] == y_te[i] and clean[j]]
        d = [float(((x_te[i] - x_tr[j]) ** 2).sum()) for j in cand]
        out.append(cand[int(np.argmin(d))] if cand else -1)
    return np.array(out)


def test_nearest_same_label_clean_partner_matches_brute_force_and_chunking():
    gen = torch.Generator().manual_seed(5)
    x_tr, x_te = torch.randn(200, 6, generator=gen), torch.randn(60, 6, generator=gen)
    y_tr, y_te = (
        torch.randint(0, 4, (200,), generator=gen),
        torch.randint(0, 4, (60,), generator=gen),
    )
    clean = torch.rand(200, generator=gen) > 0.3
    expected = brute_force_nearest(x_te.double(), y_te, x_tr.double(), y_tr, clean)
    for chunk in (2**24, 50):  # tiny chunks force many blocks
        pairs = pair_samples(x_te, y_te, x_tr, y_tr, clean, chunk_elems=chunk)
        assert np.array_equal(pairs.test, np.arange(60))
        assert np.array_equal(pairs.train, expected)
        assert bool(clean[pairs.train].all())
        assert np.array_equal(y_tr[pairs.train].numpy(), y_te.numpy())


def test_ties_go_to_the_lower_training_index():
    x_tr = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    y_tr = torch.tensor([0, 0, 0])
    x_te = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    pairs = pair_samples(x_te, torch.tensor([0, 0]), x_tr, y_tr)
    assert pairs.train.tolist() == [0, 0]


def test_knn_and_random_pairing():
    gen = torch.Generator().manual_seed(2)
    x_tr, x_te = torch.randn(50, 3, generator=gen), torch.randn(10, 3, generator=gen)
    y_tr, y_te = (
        torch.randint(0, 2, (50,), generator=gen),
        torch.randint(0, 2, (10,), generator=gen),
    )
    knn = pair_samples(x_te, y_te, x_tr, y_tr, method="knn", k=3)
    assert len(knn.test) == 30 and np.array_equal(knn.test, np.repeat(np.arange(10), 3))
    for i in range(10):
        partners = knn.train[knn.test == i]
        d = ((x_tr[partners] - x_te[i]) ** 2).sum(1)
        same = np.flatnonzero(y_tr.numpy() == y_te[i].item())
        best3 = np.sort(((x_tr[same] - x_te[i]) ** 2).sum(1).numpy())[:3]
        assert np.allclose(np.sort(d.numpy()), best3, atol=1e-5)
    r1 = pair_samples(x_te, y_te, x_tr, y_tr, method="random", seed=4)
    r2 = pair_samples(x_te, y_te, x_tr, y_tr, method="random", seed=4)
    assert np.array_equal(r1.train, r2.train)
    assert np.array_equal(y_tr[r1.train].numpy(), y_te.numpy())


def test_class_without_clean_training_samples_is_unpaired():
    x_tr, y_tr = torch.randn(20, 3), torch.tensor([0] * 10 + [1] * 10)
    clean = torch.tensor([True] * 10 + [False] * 10)  # every label-1 sample corrupted
    x_te, y_te = torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 1, 0])
    pairs = pair_samples(x_te, y_te, x_tr, y_tr, clean)
    assert pairs.unpaired.tolist() == [1, 3, 4]
    assert pairs.test.tolist() == [0, 2, 5]


def test_bad_pairing_arguments():
    x, y = torch.randn(4, 2), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="method='nearest'"):
        pair_samples(x, y, x, y, method="nearest")
    with pytest.raises(ValueError, match="k=0"):
        pair_samples(x, y, x, y, method="knn", k=0)


@pytest.fixture
def paired():
    model = random_mlp(3, "tanh", False, seed=4)
    gen = torch.Generator().manual_seed(5)
    data = SimpleNamespace(
        x_train=torch.randn(40, 9, generator=gen, dtype=torch.float64),
        x_test=torch.randn(30, 9, generator=gen, dtype=torch.float64),
    )
    pairs = SimpleNamespace(train=np.arange(0, 40, 2), test=np.arange(20))
    return model, model.layer_names[1], data, pairs


def test_pair_activities_and_dual_errors(paired):
    model, layer, data, pairs = paired
    a_tr, a_te, keep = pair_activities(model, layer, data, pairs)
    assert bool(keep.all())
    assert torch.equal(a_tr, aw.layer_inputs(model, layer, data.x_train[pairs.train]))
    assert torch.equal(a_te, aw.layer_inputs(model, layer, data.x_test[pairs.test]))
    W = model.get_submodule(layer).weight.detach()
    x_tr, x_te = data.x_train[pairs.train], data.x_test[pairs.test]
    exact = dual_errors(model, layer, x_tr, x_te, aw.dual_weights(W, a_tr, a_te))
    assert exact.shape == (20,) and float(exact.max()) <= 1e-12
    wrong = dual_errors(model, layer, x_tr, x_te, 1.1 * aw.dual_weights(W, a_tr, a_te))
    assert float(wrong.min()) > 1e-6


def test_family_sweep_minimal_member_is_dual_weights_and_every_member_is_exact(paired):
    model, layer, data, pairs = paired
    fam = family_sweep(model, layer, data, pairs, [0.0, 1.0, 3.0], seed=2)
    assert fam["norm_ratio"][0] == pytest.approx(1.0, abs=1e-14)
    assert fam["min_norm_ratio"][0] == pytest.approx(1.0, abs=1e-14)
    assert (fam["max_error"] <= 1e-12).all()
    # the added part is orthogonal to the minimal one and at most ``scale`` times as long
    s = fam["scale"]
    assert (fam["min_norm_ratio"][1:] > 1).all()
    assert (fam["norm_ratio"] <= np.sqrt(1 + s**2) + 1e-12).all()


def test_scaling_sweep_ratio_is_the_scale(paired):
    model, layer, data, pairs = paired
    table = scaling_sweep(model, layer, data, pairs, [0.5, 2.0, -1.0])
    assert np.allclose(table["ratio"], [0.5, 2.0, 1.0], rtol=1e-12, atol=0)


def test_float64_model_is_an_eval_copy():
    model = MLP(3, (4,), 2, "relu", True).train()
    copy64 = float64_model(model)
    assert model.training and not copy64.training
    assert all(p.dtype == torch.float64 for p in copy64.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters())
