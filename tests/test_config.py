"""Config: validation of every field, coercion, replace, key, presets, immutability."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from awbench.config import (
    FIELD_NAMES,
    KEY_OPTIONAL_DEFAULTS,
    PRESETS,
    SCHEMA_VERSION,
    Config,
    ConfigError,
)

# One value per field that validation must reject. A field added to Config without an entry
# here makes test_every_field_has_a_bad_value fail, so no field escapes the bad-value test.
BAD_VALUES = {
    "dataset": "cifar10",
    "data_dir": 3,
    "n_train": 5,
    "n_test": 0,
    "label_noise": 0.95,
    "widths": [30, 0],
    "activation": "swish",
    "bias": "maybe",
    "dropout": 1.0,
    "init_scale": 0.0,
    "lr": -0.1,
    "batch_size": 0,
    "momentum": 1.0,
    "weight_decay": -0.01,
    "weight_decay_mode": "l1",
    "weight_decay_epochs": -1,
    "max_epochs": 0,
    "stop_loss": 0.0,
    "stop_acc": 1.5,
    "stop_window": 0,
    "seed": -1,
    "layer": "fc9",
    "pairing": "nearest",
    "pairing_k": 0,
    "n_sharp": 0,
    "dtype": "float16",
    "device": "tpu",
    "n_learners": 0,
    "algorithm": "adam",
    "topology": "star",
    "local_steps": 0,
    "loss": "l2",
}

# A valid value different from the default, per field (used to check that key() sees it).
OTHER_VALUES = {
    "dataset": "mnist1d",
    "data_dir": "/data/mnist",
    "n_train": 1000,
    "n_test": 100,
    "label_noise": 0.1,
    "widths": (30, 31),
    "activation": "tanh",
    "bias": True,
    "dropout": 0.1,
    "init_scale": 4.0,
    "lr": 0.05,
    "batch_size": 100,
    "momentum": 0.9,
    "weight_decay": 0.01,
    "weight_decay_mode": "squared",
    "weight_decay_epochs": 17,
    "max_epochs": 10,
    "stop_loss": 1e-4,
    "stop_acc": 0.95,
    "stop_window": 3,
    "seed": 7,
    "layer": "fc1",
    "pairing": "knn",
    "pairing_k": 3,
    "n_sharp": 5,
    "dtype": "float64",
    "device": "auto",
    "n_learners": 4,
    "algorithm": "ssgd",
    "topology": "full",
    "local_steps": 4,
    "loss": "mse",
}

# Fields whose alternative value needs another field changed too, to stay valid.
BASE_FOR = {"n_learners": {"algorithm": "ssgd"}}


def test_every_field_has_a_bad_value():
    assert set(BAD_VALUES) == set(FIELD_NAMES)
    assert set(OTHER_VALUES) == set(FIELD_NAMES)


@pytest.mark.parametrize("name", FIELD_NAMES)
def test_bad_value_names_field_and_value(name):
    bad = BAD_VALUES[name]
    with pytest.raises(ConfigError) as info:
        Config(**{name: bad})
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    assert name in msg
    assert repr(bad) in msg or str(bad) in msg
    assert "expected" in msg  # says what is allowed


@pytest.mark.parametrize("name", FIELD_NAMES)
def test_bad_value_through_replace_and_from_dict(name):
    with pytest.raises(ConfigError, match=name):
        Config().replace(**{name: BAD_VALUES[name]})
    d = Config().to_dict()
    d[name] = BAD_VALUES[name]
    with pytest.raises(ConfigError, match=name):
        Config.from_dict(d)


@pytest.mark.parametrize(
    "name, bad",
    [
        ("n_train", "many"),
        ("n_train", 10.5),
        ("n_train", True),
        ("lr", "fast"),
        ("lr", float("nan")),
        ("lr", float("inf")),
        ("lr", True),
        ("seed", 2**31),
        ("widths", []),
        ("widths", "[]"),
        ("widths", [30, -1]),
        ("widths", [30, 2.5]),
        ("widths", 30),
        ("bias", 2),
        ("activation", None),
        ("weight_decay_epochs", 2.5),
        ("weight_decay_epochs", "soon"),
        ("label_noise", -0.1),
        ("dropout", -0.1),
    ],
)
def test_more_bad_values(name, bad):
    with pytest.raises(ConfigError, match=name):
        Config(**{name: bad})


@pytest.mark.parametrize(
    "name, given, expected",
    [
        ("lr", "1e-4", 1e-4),
        ("lr", " 0.05 ", 0.05),
        ("lr", 1, 1.0),
        ("weight_decay", "0", 0.0),
        ("n_train", "25", 25),
        ("n_train", "1e3", 1000),
        ("n_train", 25.0, 25),
        ("batch_size", "100", 100),
        ("seed", "3", 3),
        ("bias", "true", True),
        ("bias", "True", True),
        ("bias", "false", False),
        ("bias", "0", False),
        ("bias", 1, True),
        ("widths", "[30, 30]", (30, 30)),
        ("widths", "(64,)", (64,)),
        ("widths", [30, 30], (30, 30)),
        ("widths", (30, 30), (30, 30)),
        ("widths", ["30", "20"], (30, 20)),
        ("weight_decay_epochs", None, None),
        ("weight_decay_epochs", "None", None),
        ("weight_decay_epochs", "null", None),
        ("weight_decay_epochs", "200", 200),
        ("weight_decay_epochs", "auto", None),
        ("max_epochs", "auto", None),
        ("max_epochs", float("nan"), None),
        ("weight_decay_epochs", 0, 0),
    ],
)
def test_coercion(name, given, expected):
    cfg = Config(**{name: given})
    value = getattr(cfg, name)
    assert value == expected
    assert type(value) is type(expected)


def test_coerced_config_equals_typed_config_and_has_same_key():
    from_strings = Config(lr="1e-1", n_train="1297", widths="[30, 30]", bias="false", seed="0")
    assert from_strings == Config()
    assert from_strings.key() == Config().key()


def test_replace_unknown_field_errors():
    with pytest.raises(ConfigError, match="learning_rate"):
        Config().replace(learning_rate=0.1)
    with pytest.raises(ConfigError, match="learning_rate"):
        Config.from_dict({"learning_rate": 0.1})


def test_replace_returns_new_validated_config():
    base = Config()
    new = base.replace(batch_size="100", seed=3)
    assert new.batch_size == 100 and new.seed == 3
    assert base.batch_size == 25 and base.seed == 0  # the original is untouched


def test_frozen():
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 0.5  # type: ignore[misc]
    assert isinstance(cfg.widths, tuple)
    hash(cfg)  # usable as a dict key / lru_cache argument


def test_key_same_config_same_key():
    assert Config().key() == Config().key()
    assert Config.preset("paper").key() == Config().key()
    key = Config().key()
    assert len(key) == 16 and all(c in "0123456789abcdef" for c in key)


@pytest.mark.parametrize("name", FIELD_NAMES)
def test_key_changes_with_every_field(name):
    base = Config(**BASE_FOR.get(name, {}))
    other = base.replace(**{name: OTHER_VALUES[name]})
    assert getattr(other, name) != getattr(base, name)
    assert other.key() != base.key()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_key_survives_dict_and_json_roundtrip(preset):
    cfg = Config.preset(preset).replace(weight_decay_epochs=None, widths=[20, 10], layer="fc3")
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d  # to_dict is plain JSON
    again = Config.from_dict(json.loads(json.dumps(d)))
    assert again == cfg and again.key() == cfg.key()
    shuffled = dict(reversed(list(d.items())))  # key order must not matter
    assert Config.from_dict(shuffled).key() == cfg.key()


def test_key_is_canonical_json_with_schema_version():
    import hashlib

    # The key hashes JSON text; the text must not depend on dict order or whitespace choices.
    # A field added later (KEY_OPTIONAL_DEFAULTS) is in the text only away from its default.
    for cfg in (Config.preset("smoke"), Config.preset("smoke").replace(loss="mse")):
        d = cfg.to_dict()
        d = {k: v for k, v in d.items() if KEY_OPTIONAL_DEFAULTS.get(k, object()) != v}
        text = json.dumps({"schema": SCHEMA_VERSION, **d}, sort_keys=True, separators=(",", ":"))
        assert hashlib.sha256(text.encode()).hexdigest()[:16] == cfg.key()


def test_a_field_added_later_leaves_the_keys_at_its_default_as_they_were():
    # the key of the paper preset before the loss field existed (the shipped knob grid's)
    assert Config().key() == "4dbb86b7a66cbd83"
    assert Config(loss="mse").key() != Config().key()


def test_loss_mse_is_refused_for_multi_learner_training():
    with pytest.raises(ConfigError, match=r"Config.loss='mse'.*single-learner"):
        Config(loss="mse", n_learners=4, algorithm="ssgd")


@pytest.mark.slow
def test_key_stable_across_processes():
    # Load config.py on its own (it needs only the standard library) to skip importing torch.
    import awbench.config

    code = (
        "import importlib.util as u, sys; "
        f"s = u.spec_from_file_location('c', {awbench.config.__file__!r}); "
        "m = u.module_from_spec(s); sys.modules['c'] = m; s.loader.exec_module(m); "
        "print(m.Config.preset('smoke').key())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # a different str-hash salt than ours
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == Config.preset("smoke").key()


def test_equal_configs_have_equal_keys_negative_zero():
    a, b = Config(weight_decay=0.0), Config(weight_decay=-0.0)
    assert a == b
    assert a.key() == b.key()


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("n_train", np.int64(100), 100),
        ("lr", np.float32(0.5), 0.5),
        ("bias", np.bool_(True), True),
        ("widths", np.array([30, 20]), (30, 20)),
        ("weight_decay_epochs", np.int64(5), 5),
    ],
    ids=["int64", "float32", "bool_", "ndarray", "int64-optional"],
)
def test_numpy_values_are_coerced(name, value, expected):
    cfg = Config(**{name: value})
    assert getattr(cfg, name) == expected and type(getattr(cfg, name)) is type(expected)


def test_space_separated_widths_are_not_misread():
    try:
        widths = Config(widths="30 30").widths
    except ConfigError:
        return  # an error is fine too
    assert widths == (30, 30)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_construct(name):
    cfg = Config.preset(name)
    assert isinstance(cfg, Config)
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_paper_preset_is_the_protocol():
    cfg = Config.preset("paper")
    assert cfg.dataset == "digits" and (cfg.n_train, cfg.n_test) == (1297, 500)
    assert cfg.widths == (30, 30) and cfg.activation == "relu" and cfg.bias is False
    assert cfg.layer == "fc2" and cfg.lr == 0.1 and cfg.batch_size == 25 and cfg.momentum == 0
    assert (cfg.stop_loss, cfg.stop_acc, cfg.max_epochs) == (1e-3, 0.99, None)
    assert cfg.weight_decay_mode == "norm" and cfg.weight_decay_epochs is None
    # budgets in samples seen: 2 x 1000 epochs x 4000 samples, decay for 200 x 4000 samples
    assert cfg.epoch_budget() == -(-2 * 1000 * 4000 // 1297) == 6169
    assert cfg.decay_epochs() == -(-200 * 4000 // 1297) == 617
    mnist = Config.preset("paper-mnist")
    assert mnist.dataset == "mnist" and (mnist.n_train, mnist.n_test) == (4000, 1000)


def test_unknown_preset_errors():
    with pytest.raises(ConfigError, match="nope"):
        Config.preset("nope")


@pytest.mark.parametrize(
    "widths, good, bad",
    [
        ((30, 30), ["fc1", "fc2", "fc3"], ["fc0", "fc4", "fc", "FC2", "layer2", ""]),
        ((10,), ["fc1", "fc2"], ["fc3"]),
        ((8, 8, 8, 8), ["fc1", "fc5"], ["fc6"]),
    ],
)
def test_layer_validated_against_widths(widths, good, bad):
    for layer in good:
        assert Config(widths=widths, layer=layer).layer == layer
    for layer in bad:
        with pytest.raises(ConfigError) as info:
            Config(widths=widths, layer=layer)
        assert "layer" in str(info.value) and repr(layer) in str(info.value)


def test_shrinking_widths_invalidates_layer():
    with pytest.raises(ConfigError, match="layer"):
        Config(widths=(30, 30), layer="fc3").replace(widths=(30,))


def test_multi_learner_needs_an_algorithm():
    with pytest.raises(ConfigError, match="algorithm"):
        Config(n_learners=2)
    assert Config(n_learners=2, algorithm="dpsgd").n_learners == 2


@pytest.mark.parametrize(
    "n_train, label_noise, budget, decay",
    [
        (4000, 0.0, 2000, 200),  # the demo's MNIST set: twice its 1000 epochs, its 200 decay epochs
        (4000, 0.2, 2000, 200),  # counted on the clean samples, so noise does not shrink it
        (1297, 0.0, 6169, 617),
        (648, 0.0, 12346, 1235),
        (100, 0.0, 20000, 8000),  # tiny sets hit the stated cap
        (32000, 0.0, 250, 25),
    ],
)
def test_auto_budget_keeps_samples_seen(n_train, label_noise, budget, decay):
    cfg = Config(dataset="teacher", n_train=n_train, label_noise=label_noise, widths=(8,))
    assert cfg.epoch_budget() == budget and cfg.decay_epochs() == decay
    assert budget == min(20000, -(-2 * 1000 * 4000 // n_train))


def test_explicit_budgets_win():
    cfg = Config(max_epochs=7, weight_decay_epochs=3)
    assert cfg.epoch_budget() == 7 and cfg.decay_epochs() == 3
    assert Config(max_epochs=5).decay_epochs() == 5  # the decay window never outlasts the budget
    assert Config(max_epochs=5).key() != Config().key()
