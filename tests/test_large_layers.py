"""Large layers of any model (issue 16 item 3): structured Hessian products, rank-one dual
weights, chunked forward passes and builds, the memory estimate; integer (token) inputs."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from own_models import fit
from torch import nn

import awbench as aw
from awbench.analysis import memory
from awbench.analysis.duality import augment, dual_weights, per_sample_weights, rank_one_offsets
from awbench.analysis.memory import AnalysisMemoryError
from awbench.curvature import layer as layer_module
from awbench.curvature.layer import layer_hessian
from awbench.curvature.layer_operator import LayerHessianProducts, frozen_parameters


class ConvNet(nn.Module):
    """conv, conv, flatten, fc (tanh: downstream curvature of its own), fc on 1 x 8 x 8."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 3, 3, stride=2), nn.ReLU()
        )
        self.fc = nn.Linear(27, 9)
        self.head = nn.Linear(9, 4)

    def forward(self, x):
        h = self.features(x).flatten(1)
        return self.head(torch.tanh(self.fc(h)))


class Bag(nn.Module):
    """Token ids -> embedding -> mean over positions -> the analysed Linear -> head."""

    def __init__(self, vocab=12, dim=6):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.fc = nn.Linear(dim, 7)
        self.head = nn.Linear(7, 4)

    def forward(self, tokens):
        return self.head(torch.relu(self.fc(self.embed(tokens).mean(1))))


def _images(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = torch.rand(n, 1, 8, 8, generator=g, dtype=torch.float64) + 0.4 * y[:, None, None, None]
    return x, y


def _tokens(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = torch.randint(0, 12, (n, 5), generator=g)
    x[:, 0] = 3 * y  # a class-bearing token, so the net can fit the labels
    return x, y


@pytest.fixture(scope="module")
def convnet():
    torch.manual_seed(3)
    x, y = _images(50, 0)
    return fit(ConvNet(), x, y, steps=80, lr=0.2), (x, y), _images(30, 1)


def _autograd_hvp(model, layer, x, y, v, with_bias):
    """Generic double backprop through the whole network w.r.t. [W | b]: the reference."""
    module = dict(model.named_modules())[layer]
    params = [module.weight] + ([module.bias] if with_bias else [])
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    flat = torch.cat([g.reshape(g.shape[0], -1) for g in grads], 1).reshape(-1)
    (hv,) = torch.autograd.grad(flat @ v, params[0]) if not with_bias else (None,)
    if with_bias:
        hv_w, hv_b = torch.autograd.grad(flat @ v, params)
        hv = torch.cat([hv_w, hv_b[:, None]], 1)
    return hv.reshape(-1)


@pytest.mark.parametrize("layer", ["fc", "head"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_structured_products_are_the_dense_hessian_and_double_backprop(convnet, layer, with_bias):
    model, (x, y), _ = convnet
    products = LayerHessianProducts(model, layer, x, y, with_bias)
    H = layer_hessian(model, layer, x, y, with_bias=with_bias)
    P = products.size
    assert H.shape == (P, P)
    columns = torch.stack([products.matvec(e) for e in torch.eye(P, dtype=torch.float64)], 1)
    assert torch.allclose(columns, H, rtol=1e-12, atol=1e-14)
    v = torch.randn(P, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    ref = _autograd_hvp(model, layer, x, y, v, with_bias)
    assert torch.allclose(products.matvec(v), ref, rtol=1e-11, atol=1e-14)
    # the head's G_k is the loss's own, in closed form: no graph is kept for it
    assert (products.logit_hessian is not None) == (layer == "head")
    assert (products.graph_bytes > 0) == (layer == "fc")
    assert all(p.requires_grad for p in model.parameters())  # unfrozen afterwards


class HeadThen(nn.Module):
    """An MLP whose forward returns the head's output as it is, scaled, or scaled in place
    (the last two must take the autograd route: the logits are not the head's output)."""

    def __init__(self, after="none"):
        super().__init__()
        self.fc = nn.Linear(5, 8)
        self.head = nn.Linear(8, 6)
        self.after = after

    def forward(self, x):
        out = self.head(torch.tanh(self.fc(x)))
        if self.after == "scaled":
            return 1.5 * out
        if self.after == "in_place":
            return out.mul_(1.5)
        return out


@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("after", ["none", "scaled", "in_place"])
def test_closed_form_head_products_only_when_the_logits_are_the_head_output(loss, after):
    torch.manual_seed(0)
    model = HeadThen(after).double()
    x = torch.randn(40, 5, dtype=torch.float64)
    y = torch.arange(40) % 6
    products = LayerHessianProducts(model, "head", x, y, with_bias=True, loss=loss)
    assert (products.logit_hessian is not None) == (after == "none")
    H = layer_hessian(model, "head", x, y, with_bias=True, loss=loss)
    columns = torch.stack(
        [products.matvec(e) for e in torch.eye(products.size, dtype=torch.float64)], 1
    )
    assert torch.allclose(columns, H, rtol=1e-12, atol=1e-14)


def test_frozen_parameters_restore_each_flag():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    model[0].bias.requires_grad_(False)
    with frozen_parameters(model):
        assert not any(p.requires_grad for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == [True, False, True, True]


def test_rank_one_offsets_are_the_per_sample_weights(convnet):
    model, (x, _), (xt, _) = convnet
    a_tr = augment(aw.layer_inputs(model, "fc", x[:20]))
    a_te = augment(aw.layer_inputs(model, "fc", xt[:20]))
    W = torch.cat([model.fc.weight.detach(), model.fc.bias.detach()[:, None]], 1)
    u = (a_te - a_tr) @ W.T
    b = a_tr / (a_tr * a_tr).sum(1, keepdim=True)
    with torch.no_grad():
        with rank_one_offsets(model, "fc", u, b):
            low_rank = model(x[:20])
        with per_sample_weights(model, "fc", dual_weights(W, a_tr, a_te)):
            full = model(x[:20])
        direct = model(xt[:20])
    assert torch.allclose(low_rank, full, rtol=0, atol=1e-13)
    assert torch.allclose(low_rank, direct, rtol=0, atol=1e-13)  # the duality itself


@pytest.mark.parametrize("route", [{}, {"dense_max": 10, "lanczos_k": 12}])
def test_statistics_from_factors_equal_those_of_the_built_dual_weights(convnet, route):
    model, train, test = convnet
    an = aw.analyze_model(model, "fc", train, test, **route)
    dw = an.dual.reshape(an.n_pairs, -1)  # built here only, from the factors
    g = an.secant.reshape(an.n_pairs, -1)
    theta = dw @ an.eigenvectors
    d = an.directions.sort_values("eigen_index")
    assert np.allclose(d["mu_w"], theta.mean(0).numpy(), rtol=1e-10, atol=1e-15)
    assert np.allclose(d["sigma_w"], theta.std(0, correction=0).numpy(), rtol=1e-9, atol=1e-14)
    assert an.size == pytest.approx(float(((dw - dw.mean(0)) ** 2).sum(1).mean()), rel=1e-10)
    assert an.sharpness == pytest.approx(float(((g - g.mean(0)) ** 2).sum(1).mean()), rel=1e-10)
    residual = dw - theta @ an.eigenvectors.T
    complement = float((residual * (g - (g @ an.eigenvectors) @ an.eigenvectors.T)).sum(1).mean())
    assert an.complement_gap == pytest.approx(complement, rel=1e-9, abs=1e-14)
    assert an.identity_error <= 1e-12


@pytest.mark.parametrize("route", [{}, {"dense_max": 10, "lanczos_k": 12}])
def test_chunked_forward_passes_and_hessian_build_give_the_whole_numbers(
    convnet, monkeypatch, route
):
    model, train, test = convnet
    whole = aw.analyze_model(model, "fc", train, test, **route)
    monkeypatch.setattr(layer_module, "FORWARD_CHUNK_ROWS", 7)
    monkeypatch.setattr(layer_module, "HESSIAN_CHUNK_BYTES", 1)  # one sample per chunk
    calls = []
    output_hessians = layer_module.output_hessians
    monkeypatch.setattr(
        layer_module, "output_hessians", lambda *a: calls.append(len(a[2])) or output_hessians(*a)
    )
    chunked = aw.analyze_model(model, "fc", train, test, **route)
    if not route:  # the dense route built its Hessian one sample at a time
        assert calls == [1] * len(train[1])
    for k, v in whole.scalars().items():
        if isinstance(v, float) and k not in ("identity_error", "duality_error"):
            assert chunked.scalars()[k] == pytest.approx(v, rel=1e-9, abs=1e-14), k
    assert np.allclose(chunked.directions["lam"], whole.directions["lam"], rtol=1e-9, atol=1e-14)
    assert chunked.duality_error <= 1e-12 and chunked.identity_error <= 1e-12


def test_token_inputs_through_an_embedding():
    torch.manual_seed(4)
    x, y = _tokens(48, 0)
    model = fit(Bag(), x, y, steps=80, lr=0.2)
    for route in ({}, {"dense_max": 10, "lanczos_k": 10}):
        an = aw.analyze_model(model, "fc", (x, y), _tokens(24, 1), **route)
        assert an.n_pairs > 0
        assert an.duality_error <= 1e-12 and an.identity_error <= 1e-10
    # token ids pair by Hamming-like distance in raw input space; floats would be a mistake
    with pytest.raises(ValueError, match="tokens|Embedding|dtype|Long|Int"):
        aw.analyze_model(model, "fc", (x.double(), y), _tokens(24, 1))


def test_the_lanczos_estimate_counts_the_downstream_graph(convnet, monkeypatch):
    model, train, test = convnet
    seen = {}
    real = memory.estimate_bytes

    def spy(*args):
        seen["parts"] = real(*args)
        return seen["parts"]

    monkeypatch.setattr("awbench.analysis.guards.estimate_bytes", spy)
    aw.analyze_model(model, "fc", train, test, dense_max=10, lanczos_k=5)
    parts = seen["parts"]
    # fc's downstream is tanh, head and the loss: a few rows of 9 and 4 floats per sample
    assert 0 < parts["downstream graph"] <= 50 * 8 * (9 * 6 + 4 * 6) + 2 * 8 * 9 * 4
    assert "per-sample output Hessians" not in parts
    with pytest.raises(AnalysisMemoryError, match="downstream graph") as err:
        aw.analyze_model(
            model,
            "fc",
            train,
            test,
            dense_max=10,
            lanczos_k=5,
            memory_limit=parts["downstream graph"],
        )
    assert "The largest part is the" in str(err.value) and "memory_limit=<bytes>" in str(err.value)
    dense = memory.estimate_bytes(10_000, 1_000, 10, 513, "dense", 5130)
    with pytest.raises(AnalysisMemoryError, match="Hessian and eigenvectors: try dense_max below"):
        memory.check_memory(dense, 2**20, "a 5130-weight head")


def test_device_argument(convnet):
    model, train, test = convnet
    here = aw.analyze_model(model, "fc", train, test)
    on_cpu = aw.analyze_model(model, "fc", train, test, device="cpu")
    assert on_cpu.scalars() == here.scalars()
    assert on_cpu.dual_u.device.type == "cpu" and on_cpu.eigenvectors.device.type == "cpu"
    for bad, match in (("gpu0", "device='gpu0' is not allowed"), ("meta", "'cpu' or 'cuda")):
        with pytest.raises(ValueError, match=match):
            aw.analyze_model(model, "fc", train, test, device=bad)
    if not torch.cuda.is_available():  # this machine: the error says why, before any work
        with pytest.raises(ValueError, match=r"device='cuda' is not allowed here: torch sees 0"):
            aw.analyze_model(model, "fc", train, test, device="cuda")
    else:  # a CUDA machine: the same numbers on the device
        on_gpu = aw.analyze_model(model, "fc", train, test, device="cuda")
        for k, v in here.scalars().items():
            if isinstance(v, float) and k not in ("identity_error", "duality_error"):
                assert on_gpu.scalars()[k] == pytest.approx(v, rel=1e-9, abs=1e-13), k


def test_lanczos_products_are_counted_in_interactive_use(convnet, monkeypatch, capsys):
    model, train, test = convnet
    quiet = aw.analyze_model(model, "fc", train, test, dense_max=10, lanczos_k=6)
    assert "H v products" not in capsys.readouterr().err  # headless: no bar
    monkeypatch.setattr("awbench.progress.interactive", lambda: True)
    shown = aw.analyze_model(model, "fc", train, test, dense_max=10, lanczos_k=6)
    assert "fc: Lanczos, H v products" in capsys.readouterr().err
    assert shown.scalars() == quiet.scalars()


@pytest.mark.parametrize("shape", [(9, 4), (4, 9)])
@pytest.mark.parametrize("m", [3, 36])
def test_coordinates_are_the_dual_weights_times_the_basis_in_either_contraction(shape, m):
    from awbench.analysis import pair_gaps as pg

    g = torch.Generator().manual_seed(2)
    u = torch.randn(23, shape[0], generator=g, dtype=torch.float64)
    b = torch.randn(23, shape[1], generator=g, dtype=torch.float64)
    V = torch.randn(shape[0] * shape[1], m, generator=g, dtype=torch.float64)
    explicit = torch.einsum("ko,ki->koi", u, b).reshape(23, -1) @ V
    got = pg.PairGaps(u, b).coordinates(V)
    assert torch.allclose(got, explicit, rtol=1e-13, atol=1e-13)
    # blocks of pairs: the same numbers when every block holds one pair
    one_pair = pg.PairGaps(u, b).coordinates(V, block_bytes=1)
    assert torch.allclose(one_pair, explicit, rtol=1e-13, atol=1e-13)
