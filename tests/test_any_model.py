"""analyze_model on models that are not awbench MLPs, against ground truth (issue 16)."""

import pytest
import torch
from own_models import dense_reference_hessian, fit
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import awbench as aw
from awbench.curvature.flat import NondeterministicModelError
from awbench.curvature.layer import layer_hessian


class SmallCNN(nn.Module):
    """conv, conv, flatten, fc, fc on 1 x 8 x 8 images (an in-place ReLU after fc1)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2), nn.ReLU()
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(36, 12), nn.ReLU(inplace=True), nn.Linear(12, 5)
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class ResidualBN(nn.Module):
    """Linear, BatchNorm (eval), a residual block, then the analysed Linear and a head."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(64, 10)
        self.bn = nn.BatchNorm1d(10)
        self.block = nn.Sequential(nn.Linear(10, 10), nn.Tanh(), nn.Linear(10, 10))
        self.fc = nn.Linear(10, 8)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        h = torch.relu(self.bn(self.inp(x.flatten(1))))
        h = h + self.block(h)
        return self.head(torch.tanh(self.fc(h)))


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 5
    x = torch.rand(n, 1, 8, 8, generator=g, dtype=torch.float64) + 0.3 * y[:, None, None, None]
    return x, y


@pytest.fixture(scope="module")
def samples():
    return _data(60, 0), _data(40, 1)


@pytest.fixture(scope="module")
def cnn(samples):
    torch.manual_seed(0)
    return fit(SmallCNN(), *samples[0], steps=60, lr=0.1)


@pytest.fixture(scope="module")
def resnet(samples):
    torch.manual_seed(1)
    model = ResidualBN().double()
    with torch.no_grad():  # non-trivial running statistics, then eval mode
        model.train()
        model(samples[0][0])
    return fit(model, *samples[0], steps=60, lr=0.1)


CASES = [("cnn", "classifier.1"), ("cnn", "classifier.3"), ("resnet", "fc"), ("resnet", "head")]


@pytest.mark.parametrize(("which", "layer"), CASES)
@pytest.mark.parametrize("pairing", ["input", "feature"])
def test_duality_and_identity_are_exact(request, samples, which, layer, pairing):
    model = request.getfixturevalue(which)
    an = aw.analyze_model(model, layer, samples[0], samples[1], pairing=pairing)
    assert an.hessian_method == "dense"
    assert an.n_pairs > 0
    assert an.duality_error <= 1e-12
    assert an.identity_error <= 1e-10
    parts = an.sharp_gap + an.flat_gap + an.complement_gap
    assert abs(parts - an.pair_gap) <= 1e-10


@pytest.mark.parametrize(("which", "layer"), [("cnn", "classifier.3"), ("resnet", "fc")])
def test_layer_hessian_matches_torch_func(request, samples, which, layer):
    model = request.getfixturevalue(which)
    x, y = samples[0]
    H = layer_hessian(model, layer, x, y)
    ref = dense_reference_hessian(model, layer, x, y)
    assert torch.allclose(H, ref, atol=1e-12, rtol=1e-10)


# classifier.1 is followed by an in-place ReLU: the structured products' graph starts at a copy
@pytest.mark.parametrize(
    ("which", "layer"), [("cnn", "classifier.1"), ("cnn", "classifier.3"), ("resnet", "fc")]
)
def test_lanczos_route_agrees_with_dense(request, samples, which, layer):
    model = request.getfixturevalue(which)
    dense = aw.analyze_model(model, layer, samples[0], samples[1])
    lz = aw.analyze_model(model, layer, samples[0], samples[1], dense_max=10, lanczos_k=8)
    assert lz.hessian_method == "lanczos+complement" and len(lz.directions) == 8
    assert lz.identity_error <= 1e-10
    for name in ("sharpness", "size", "pair_gap", "real_gap"):
        assert getattr(lz, name) == pytest.approx(getattr(dense, name), rel=1e-10, abs=1e-14)
    # the top eigen-directions' sign-free fields agree (the Lanczos basis is the dense one's top)
    fields = ["lam", "sigma_w", "sigma_g", "contribution"]
    top = dense.directions.sort_values("lam", ascending=False)[fields].to_numpy()[:4]
    top_lz = lz.directions.sort_values("lam", ascending=False)[fields].to_numpy()[:4]
    assert top_lz == pytest.approx(top, rel=1e-6, abs=1e-12)


def test_dataloaders_give_the_tensors_numbers(cnn, samples):
    (xtr, ytr), (xte, yte) = samples
    ref = aw.analyze_model(cnn, "classifier.1", (xtr, ytr), (xte, yte))
    loaders = [DataLoader(TensorDataset(x, y), batch_size=16) for x, y in samples]
    an = aw.analyze_model(cnn, "classifier.1", *loaders)
    assert an.scalars() == ref.scalars()


def test_a_shuffling_dataloader_is_refused(cnn, samples):
    loader = DataLoader(TensorDataset(*samples[0]), batch_size=16, shuffle=True)
    with pytest.raises(ValueError, match="two passes over the DataLoader gave different"):
        aw.analyze_model(cnn, "classifier.1", loader, samples[1])


def test_feature_pairing_at_any_named_layer(cnn, samples):
    an = aw.analyze_model(
        cnn, "classifier.3", *samples, pairing="feature", pairing_layer="features.2"
    )
    assert an.duality_error <= 1e-12 and an.identity_error <= 1e-10


def test_a_layer_that_is_not_linear_is_refused(cnn, samples):
    with pytest.raises(ValueError, match=r"layer='features.0' is not a Linear layer"):
        aw.analyze_model(cnn, "features.0", *samples)


def test_a_model_with_no_linear_layer_or_no_parameters_is_refused_by_name(samples):
    for model in (nn.Sequential(nn.Flatten()), nn.Sequential(nn.Flatten(), nn.Softmax(-1))):
        with pytest.raises(ValueError, match=r"layer='fc': this model \(Sequential\) has no nn"):
            aw.analyze_model(model, "fc", *samples)


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 64)
        self.out = nn.Linear(64, 5)

    def forward(self, x):
        return self.out(self.fc(torch.relu(self.fc(x.flatten(1)))))


class Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(x.reshape(len(x), 8, 8)).mean(1)


class Noisy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 5)

    def forward(self, x):
        return self.fc(x.flatten(1)) + torch.randn(len(x), 5, dtype=x.dtype)


class SideBranch(nn.Module):
    """fc runs once per forward, but its output never reaches the logits (or only detached)."""

    def __init__(self, detach):
        super().__init__()
        self.fc = nn.Linear(64, 5)
        self.out = nn.Linear(64, 5)
        self.detach = detach

    def forward(self, x):
        side = self.fc(x.flatten(1))
        return self.out(x.flatten(1)) + (
            side.detach() if self.detach else 0.0 * side.sum(0).detach()
        )


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (Shared(), r"layer='fc' is called 2 times per forward pass"),
        (Tokens(), r"layer='fc' receives inputs of shape \(4, 8, 8\)"),
        (SideBranch(detach=False), r"layer='fc' does not feed the model's output"),
        (SideBranch(detach=True), r"layer='fc' does not feed the model's output"),
    ],
)
def test_layers_the_duality_cannot_serve_are_refused(samples, model, match):
    with pytest.raises(ValueError, match=match):
        aw.analyze_model(model, "fc", *samples)


def test_a_nondeterministic_model_is_refused(samples):
    with pytest.raises(NondeterministicModelError, match="not deterministic in eval mode"):
        aw.analyze_model(Noisy(), "fc", *samples)


def test_mismatched_shapes_are_refused(cnn, samples):
    (xtr, ytr), (xte, yte) = samples
    with pytest.raises(ValueError, match=r"train: x of shape \(60, 1, 8, 8\) and y of shape"):
        aw.analyze_model(cnn, "classifier.1", (xtr, ytr[:-1]), (xte, yte))
    with pytest.raises(ValueError, match="both sets must share the input shape"):
        aw.analyze_model(cnn, "classifier.1", (xtr, ytr), (xte[:, :, :4], yte))
    with pytest.raises(ValueError, match="labels go up to 7 but the model gives 5 logits"):
        aw.analyze_model(cnn, "classifier.1", (xtr, ytr + 3), (xte, yte))
    with pytest.raises(ValueError, match="clean of dtype"):
        aw.analyze_model(cnn, "classifier.1", (xtr, ytr), (xte, yte), clean=torch.ones(3))


def test_analyze_run_is_analyze_model_on_its_model():
    run = aw.train(aw.Config.preset("smoke").replace(max_epochs=3, seed=2))
    d, cfg = run.data, run.config
    an = aw.analyze(run)
    direct = aw.analyze_model(
        run.model,
        cfg.layer,
        (d.x_train, d.y_train),
        (d.x_test, d.y_test),
        d.clean,
        cfg.pairing,
        cfg.n_sharp,
        pairing_k=cfg.pairing_k,
        seed=cfg.seed,
    )
    assert an.scalars() == direct.scalars()
    assert an.directions.equals(direct.directions)


def test_dimensionless_summary_against_a_hand_computation(cnn, samples):
    import dataclasses

    import pandas as pd

    from awbench.analysis.dimensionless import dimensionless, dimensionless_table

    an = aw.analyze_model(cnn, "classifier.3", samples[0], samples[1])
    contributions = [0.5, -0.25, 0.125, 0.25] + [0.0] * 10 + [1.0]
    hand = dataclasses.replace(
        an,
        pair_gap=2.0,
        sharp_gap=1.5,
        flat_gap=0.25,
        complement_gap=0.25,
        sharpness=3.0,
        size=0.5,
        weight_norm=2.0,
        n_weights=15,
        directions=pd.DataFrame({"contribution": contributions}),
    )
    d = dimensionless(hand)
    # the 10 largest contributions: 1, 0.5, 0.25, 0.125 and six zeros; -0.25 is left out
    assert d["top10_share"] == pytest.approx(1.875 / 2.0)
    assert d["sharp_fraction"] == 0.75 and d["flat_fraction"] == 0.125
    assert d["complement_fraction"] == 0.125
    assert d["sharpness_rel"] == pytest.approx(3.0 * 4.0) and d["size_rel"] == 0.5 / 4.0
    assert d["pair_gap"] == 2.0 and d["n_weights"] == 15
    # a weight tensor or a norm in place of the recorded norm
    w = torch.full((2, 2), 0.5, dtype=torch.float64)  # |W|^2 = 1
    assert dimensionless(hand, w)["size_rel"] == 0.5
    assert dimensionless(hand, 0.5)["sharpness_rel"] == pytest.approx(0.75)
    # on the real analysis: the fractions add up to one, the norm is the layer's
    real = dimensionless(an, cnn.classifier[3].weight)
    assert real == pytest.approx(dimensionless(an))
    parts = real["sharp_fraction"] + real["flat_fraction"] + real["complement_fraction"]
    assert parts == pytest.approx(1.0, abs=1e-9)
    table = dimensionless_table({"a": an, "b": hand})
    assert list(table.index) == ["a", "b"] and table.loc["b", "size_rel"] == 0.125
