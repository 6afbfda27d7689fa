"""Issue 23: no analysis without a duality, every argument checked at the boundary, one mode
switch. Each attack case returned numbers (or a raw exception) before the fix."""

import re
import warnings

import numpy as np
import pytest
import torch
from own_models import fit
from torch import nn

import awbench as aw
from awbench.analysis import model_inputs
from awbench.analysis.duality_guard import DUALITY_RTOL


class Net(nn.Module):
    """h = tanh(inp(x)); kinds of what follows decide whether fc's duality can hold."""

    def __init__(self, kind="plain"):
        super().__init__()
        self.kind = kind
        self.inp = nn.Linear(64, 10)
        self.fc = nn.Linear(10, 10)
        self.skip = nn.Linear(10, 10)
        self.head = nn.Linear(10, 5)
        if kind == "tied":
            self.skip.weight = self.fc.weight

    def forward(self, x):
        h = torch.tanh(self.inp(x.flatten(1)))
        if self.kind == "residual":
            return self.head(h + torch.tanh(self.fc(h)))
        if self.kind in ("skip", "tied"):
            return self.head(torch.tanh(self.fc(h)) + self.skip(h))
        return self.head(torch.tanh(self.fc(h)))


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 5
    x = torch.rand(n, 1, 8, 8, generator=g, dtype=torch.float64) + 0.3 * y[:, None, None, None]
    return x, y


@pytest.fixture(scope="module")
def samples():
    return _data(40, 0), _data(20, 1)


def _fitted(kind, samples):
    torch.manual_seed(0)
    return fit(Net(kind), *samples[0], steps=30, lr=0.2)


@pytest.fixture(scope="module")
def plain(samples):
    return _fitted("plain", samples)


def _raises(error, *words):
    return pytest.raises(error, match="(?s)" + ".*".join(re.escape(w) for w in words))


# --- scope 1: the duality holds or the analysis is refused ------------------------------------


def test_the_plain_network_is_exact(plain, samples):
    an = aw.analyze_model(plain, "fc", *samples)
    assert an.duality_error <= 1e-12 and an.identity_error <= 1e-12


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("residual", ["layer='fc'", "reaches the output by another path", "residual"]),
        ("skip", ["layer='fc'", "reaches the output by another path", "skip"]),
        ("tied", ["layer='fc'", "fc.weight is the same Parameter as skip.weight", "tied"]),
    ],
)
def test_a_layer_whose_input_has_another_way_out_is_refused(samples, kind, words):
    with _raises(aw.DualityError, *words):
        aw.analyze_model(_fitted(kind, samples), "fc", *samples)


def test_a_hook_on_the_layer_is_refused(plain, samples):
    handle = plain.fc.register_forward_hook(lambda m, i, out: out * 1.5)
    try:
        with _raises(aw.DualityError, "layer='fc'", "user hooks", "_forward_hooks", "remove()"):
            aw.analyze_model(plain, "fc", *samples)
    finally:
        handle.remove()


def test_a_global_hook_is_refused(plain, samples):
    handle = nn.modules.module.register_module_forward_hook(lambda m, i, out: None)
    try:
        with _raises(aw.DualityError, "global module hooks"):
            aw.analyze_model(plain, "fc", *samples)
    finally:
        handle.remove()


def test_a_compiled_model_is_analysed_as_its_original_module(plain, samples):
    compiled = torch.compile(plain, backend="eager")
    with pytest.warns(UserWarning, match=r"torch.compile'd.*_orig_mod"):
        an = aw.analyze_model(compiled, "fc", *samples)
    ref = aw.analyze_model(plain, "fc", *samples)
    assert an.duality_error <= 1e-12
    assert an.pair_gap == ref.pair_gap and an.sharp_gap == ref.sharp_gap


def test_a_compiled_submodule_is_refused_with_the_remedy(samples):
    model = _fitted("plain", samples)
    model.head = torch.compile(model.head, backend="eager")
    with _raises(aw.DualityError, "'head' is torch.compile'd", "head._orig_mod"):
        aw.analyze_model(model, "fc", *samples)


def test_the_per_pair_check_catches_what_the_probe_misses(samples, monkeypatch):
    monkeypatch.setattr(model_inputs, "check_single_path", lambda *args: None)
    with _raises(aw.DualityError, "layer='fc'", "of 20 pairs", "misses the test loss"):
        aw.analyze_model(_fitted("residual", samples), "fc", *samples)


def test_the_tolerance_is_stated_relative_to_the_loss():
    assert 1e-12 < DUALITY_RTOL <= 1e-6


# --- scope 2: every argument checked at the boundary ------------------------------------------


@pytest.mark.parametrize(
    ("changes", "error", "words"),
    [
        ({"pairing_k": 2.5, "pairing": "knn"}, ValueError, ["pairing_k=2.5", "integer >= 1"]),
        ({"seed": -1}, ValueError, ["seed=-1", "integer >= 0"]),
        ({"memory_limit": "2Q"}, ValueError, ["memory_limit='2Q'", "K, M, G or T"]),
        ({"memory_limit": [1]}, ValueError, ["memory_limit=[1]", "'2G'"]),
        ({"basis": torch.eye(7, dtype=torch.float64)}, ValueError, ["basis of shape (7, 7)"]),
        ({"dense_max": -1}, ValueError, ["dense_max=-1", "integer >= 0"]),
        ({"lanczos_k": 0}, ValueError, ["lanczos_k=0", "integer >= 1"]),
        ({"logits": 2.0}, ValueError, ["logits=2.0", "a key or index"]),
        ({"layer": 3}, ValueError, ["layer=3", "name of an nn.Linear"]),
        ({"layer": nn.Linear(10, 10)}, ValueError, ["layer=Linear(...)", "not a module"]),
    ],
)
def test_bad_arguments_name_parameter_and_value(plain, samples, changes, error, words):
    kwargs = {"layer": "fc", **changes}
    with _raises(error, *words):
        aw.analyze_model(plain, kwargs.pop("layer"), *samples, **kwargs)


def test_memory_limit_accepts_the_environment_variables_strings(plain, samples):
    an = aw.analyze_model(plain, "fc", *samples, memory_limit="2G")
    with _raises(aw.AnalysisMemoryError, "over its limit of 0.00 GiB"):
        aw.analyze_model(plain, "fc", *samples, memory_limit="1K")
    assert an.n_pairs == 20


def test_bad_samples_name_the_split(plain, samples):
    (x, y), test = samples
    with _raises(ValueError, "train: y (torch.complex64) is not allowed", "integer class labels"):
        aw.analyze_model(plain, "fc", (x, y.to(torch.complex64)), test)
    with _raises(ValueError, "train: x is a list", "numpy array"):
        aw.analyze_model(plain, "fc", (x.tolist(), y.tolist()), test)
    with _raises(ValueError, "clean selects none of the 40 training samples"):
        aw.analyze_model(plain, "fc", (x, y), test, torch.zeros(40, dtype=torch.bool))


def test_numpy_inputs_and_a_module_layer_give_the_tensors_numbers(plain, samples):
    (x, y), (xt, yt) = samples
    ref = aw.analyze_model(plain, "fc", *samples)
    an = aw.analyze_model(plain, plain.fc, (x.numpy(), y.numpy()), (xt.numpy(), yt.numpy()))
    assert an.layer == "fc"
    assert an.scalars() == ref.scalars()


@pytest.mark.parametrize(
    "basis",
    [
        lambda P: torch.ones(P, 3, dtype=torch.float64),
        lambda P: torch.full((P, 3), float("nan"), dtype=torch.float64),
        lambda P: 1.01 * torch.eye(P, dtype=torch.float64)[:, :5],
    ],
)
def test_a_basis_that_is_not_orthonormal_is_refused(plain, samples, basis):
    with _raises(ValueError, "basis"):
        aw.analyze_model(plain, "fc", *samples, basis=basis(110))
    ok = torch.linalg.qr(torch.randn(110, 12, dtype=torch.float64)).Q
    assert aw.analyze_model(plain, "fc", *samples, basis=ok.numpy()).hessian_method == "given"


def test_a_meta_device_model_is_refused(samples):
    with torch.device("meta"):
        model = Net()
    with _raises(ValueError, "model: its parameter 'inp.weight' is on the meta device"):
        aw.analyze_model(model, "fc", *samples)


class _Outputs(nn.Module):
    """The plain net, its logits inside a tuple, a dict or an object with attributes."""

    def __init__(self, net, kind):
        super().__init__()
        self.net, self.kind = net, kind

    def forward(self, x):
        z = self.net(x)
        if self.kind == "tuple":
            return (z, z.detach())
        if self.kind == "dict":
            return {"logits": z, "hidden": z}
        return type("Out", (), {"logits": z})()


@pytest.mark.parametrize(
    ("kind", "selector"), [("tuple", 0), ("dict", "logits"), ("attr", "logits"), ("dict", None)]
)
def test_a_logits_selector_for_outputs_that_are_not_a_tensor(plain, samples, kind, selector):
    model = _Outputs(plain, kind)
    if selector is None:
        with _raises(ValueError, "returns a dict", "pass logits="):
            aw.analyze_model(model, "net.fc", *samples)
        return
    an = aw.analyze_model(model, "net.fc", *samples, logits=selector)
    ref = aw.analyze_model(plain, "fc", *samples)
    assert an.layer == "net.fc" and an.pair_gap == ref.pair_gap
    with _raises(ValueError, f"logits={'missing'!r} is not allowed for this model"):
        aw.analyze_model(model, "net.fc", *samples, logits="missing")


def test_probability_outputs_give_a_warning(plain, samples):
    model = nn.Sequential(plain, nn.Softmax(dim=1))
    with pytest.warns(UserWarning, match="look like probabilities"):
        aw.analyze_model(model, "0.fc", *samples)


def test_a_half_precision_model_gets_a_note(samples):
    model = _fitted("plain", samples).to(torch.bfloat16)
    with pytest.warns(UserWarning, match="bfloat16: it is analysed as a float64 copy"):
        aw.analyze_model(model, "fc", *samples)


def test_the_copy_carries_no_user_hooks(plain, samples):
    calls = []
    handle = plain.head.register_forward_hook(lambda m, i, out: calls.append(1))
    try:
        with pytest.warns(UserWarning, match=r"hooks on \['head'\] are not part of the analysis"):
            aw.analyze_model(plain, "fc", *samples)
    finally:
        handle.remove()
    assert calls == []


# --- scope 3: one mode switch that restores every flag ----------------------------------------


class _WithBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(64, 10)
        self.bn = nn.BatchNorm1d(10)
        self.fc = nn.Linear(10, 5)

    def forward(self, x):
        return self.fc(torch.tanh(self.bn(self.inp(x.flatten(1)))))


def _frozen_bn(samples):
    torch.manual_seed(0)
    model = _WithBN().double()
    with torch.no_grad():
        model.train()
        model(samples[0][0])
    model.train()
    model.bn.eval()  # the user's frozen BatchNorm
    return model


@pytest.mark.parametrize(
    "call",
    [
        lambda m, s: aw.layer_inputs(m, "fc", s[0][0]),
        lambda m, s: aw.duality_check(m, "fc", s[1][0][:10], s[0][0][:10]),
        lambda m, s: aw.layer_hessian(m, "fc", *s[0]),
        lambda m, s: aw.analyze_model(m, "fc", *s),
    ],
)
def test_a_frozen_batchnorm_stays_frozen(samples, call):
    model = _frozen_bn(samples)
    call(model, samples)
    assert model.training and model.inp.training and model.fc.training
    assert not model.bn.training


def test_analyze_leaves_every_flag_of_a_run_model():
    run = aw.train(aw.Config.preset("smoke").replace(max_epochs=2, seed=0))
    run.model.train()
    first = next(iter(run.model.children()))
    first.eval()
    flags = [m.training for m in run.model.modules()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aw.analyze(run)
    assert [m.training for m in run.model.modules()] == flags


def test_no_second_mode_switch_remains():
    from awbench.analysis import duality

    assert not hasattr(duality, "eval_mode")
    assert np.isfinite(DUALITY_RTOL)


class _TiedHead(nn.Module):
    """Token ids -> embedding -> mean -> head, the head's weight tied to the embedding."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(5, 6)
        self.head = nn.Linear(6, 5, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens):
        return self.head(torch.tanh(self.embed(tokens).mean(1)))


def test_a_head_tied_to_an_embedding_is_refused():
    x = torch.randint(0, 5, (30, 4), generator=torch.Generator().manual_seed(0))
    y = x[:, 0]
    with _raises(aw.DualityError, "head.weight is the same Parameter as embed.weight"):
        aw.analyze_model(_TiedHead().double(), "head", (x, y), (x[:10], y[:10]))
