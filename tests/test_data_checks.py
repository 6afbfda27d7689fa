"""The data's checks (awbench/data.py, with Config's bounds): run keys of file-backed data
follow the files' contents, bad labels and degenerate cached MNIST-1D data are data errors,
integer fields are bounded, and bad inputs fail at plan time."""

import gzip
import os
import struct
import warnings
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from awbench import config as awconfig
from awbench import data as awdata
from awbench.config import FIELD_NAMES, INT_MAX, Config, ConfigError
from awbench.data import IDX_FILES, DataError, check_inputs, load_data, read_idx
from awbench.experiments.planning import plan_sweep

# --- IDX fixtures --------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: 0x0000, type 0x08, ndim, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def idx_folder(folder: Path, n_train=60, n_test=20, side=4, test_side=None, offset=0, gz=False):
    """Four IDX files: image i has every pixel i + offset (test: + 100), label i % 10."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, n, shift, s in (
        ("train", n_train, offset, side),
        ("test", n_test, offset + 100, test_side or side),
    ):
        index = np.arange(n) + shift
        images = np.broadcast_to(index[:, None, None], (n, s, s)).astype(np.uint8)
        write_idx(folder / (IDX_FILES[f"{split}_images"] + suffix), images)
        write_idx(folder / (IDX_FILES[f"{split}_labels"] + suffix), np.arange(n) % 10)
    return folder


def idx_config(folder, **kw) -> Config:
    base = {"dataset": "mnist", "data_dir": str(folder), "n_train": 30, "n_test": 10}
    return Config(**{**base, "widths": (8,), **kw})


@pytest.fixture(autouse=True)
def _fresh_caches():
    awdata._load.cache_clear()
    awdata._idx_sizes.cache_clear()
    yield
    awdata._load.cache_clear()
    awdata._idx_sizes.cache_clear()


# --- item 1: file-backed datasets are keyed on their files' contents -----------------------


def test_idx_key_is_the_files_contents_not_the_path(tmp_path):
    a = idx_config(idx_folder(tmp_path / "a"))
    b = idx_config(idx_folder(tmp_path / "b"))  # the same files in another folder
    c = idx_config(idx_folder(tmp_path / "c", offset=1))  # other files
    gz = idx_config(idx_folder(tmp_path / "gz", gz=True))  # the same data, gzipped
    assert a.data_dir != b.data_dir and a.key() == b.key() == gz.key()
    assert c.key() != a.key()
    # the same folder through another spelling of its path
    (tmp_path / "x").mkdir()
    assert idx_config(str(tmp_path / "x" / ".." / "a")).key() == a.key()


def test_idx_files_replaced_in_place_change_key_and_data(tmp_path):
    folder = idx_folder(tmp_path / "data")
    cfg = idx_config(folder)
    key, before = cfg.key(), load_data(cfg)
    idx_folder(folder, offset=1)  # other files of the same sizes, same path
    for stem in IDX_FILES.values():
        os.utime(folder / stem, ns=(1, 1))  # a different mtime, whatever the clock's resolution
    assert cfg.key() != key
    after = load_data(cfg)  # not the in-process cache of the old files
    assert not torch.equal(after.x_train, before.x_train)
    assert torch.equal((after.x_test[:, 0] * 255).round().long(), torch.arange(101, 111))


def test_idx_fingerprint_is_hashed_once_per_file_version(tmp_path, monkeypatch):
    folder = idx_folder(tmp_path / "data", gz=True)
    cfg = idx_config(folder)
    key = cfg.key()
    opened = []
    monkeypatch.setattr(awconfig, "open", lambda *a, **k: opened.append(a), raising=False)
    monkeypatch.setattr(awconfig.gzip, "open", lambda *a, **k: opened.append(a))
    assert all(cfg.key() == key for _ in range(20)) and opened == []  # no file read again


def test_builtin_dataset_keys_are_unchanged():
    # Keys of the committed code before issue 14: the built-in datasets' payload is unchanged.
    assert Config().key() == "4dbb86b7a66cbd83"
    assert Config(data_dir="/somewhere").key() == "f0b05bb1558d89ea"
    assert Config.preset("mnist1d").key() == "868581bad65261a2"
    assert Config.preset("smoke").replace(dataset="teacher").key() == "29ca0f0bf32bbeb4"


def test_shipped_store_keys_still_resolve():
    from awbench.apps.knobs.grid import shipped_store
    from awbench.experiments.store import Store, config_from_row

    runs = Store(shipped_store()).load().runs
    assert len(runs) > 0
    for _, row in runs.iterrows():
        assert config_from_row(row).key() == row["key"]


# --- item 4: labels outside 0..9, degenerate cached MNIST-1D --------------------------------


@pytest.mark.parametrize("split", ["train", "test"])
def test_idx_label_255_is_a_data_error(tmp_path, split):
    folder = idx_folder(tmp_path / "data")
    n = 60 if split == "train" else 20
    labels = np.arange(n) % 10
    labels[7] = 255
    path = write_idx(folder / IDX_FILES[f"{split}_labels"], labels)
    for attempt in (
        lambda: load_data(idx_config(folder)),
        lambda: check_inputs(idx_config(folder)),
    ):
        with pytest.raises(DataError) as info:
            attempt()
        msg = str(info.value)
        assert str(path) in msg and "255" in msg and "0..9" in msg


def test_idx_n_classes_is_ten_even_when_files_miss_a_class(tmp_path):
    folder = idx_folder(tmp_path / "data")
    write_idx(folder / IDX_FILES["train_labels"], np.arange(60) % 5)
    write_idx(folder / IDX_FILES["test_labels"], np.arange(20) % 5)
    assert load_data(idx_config(folder)).n_classes == 10


def _mnist1d_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("AWBENCH_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "cache" / "data" / f"mnist1d_seed{awdata.MNIST1D_TEST_SEED}.npz"
    path.parent.mkdir(parents=True)
    return path


def _fake_mnist1d_chunk(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((200, 40)).astype(np.float32)
    xt = rng.standard_normal((100, 40)).astype(np.float32)
    return x, np.arange(200) % 10, xt, np.arange(100) % 10


@pytest.mark.parametrize("damage", ["all zero", "one class"])
def test_degenerate_cached_mnist1d_file_is_regenerated(tmp_path, monkeypatch, damage):
    path = _mnist1d_cache(tmp_path, monkeypatch)
    x, y, xt, yt = _fake_mnist1d_chunk(0)
    if damage == "all zero":
        x, y, xt, yt = np.zeros_like(x), np.zeros_like(y), np.zeros_like(xt), np.zeros_like(yt)
    else:
        y, yt = np.full_like(y, 3), np.full_like(yt, 3)
    np.savez(path, x=x, y=y, x_test=xt, y_test=yt)
    monkeypatch.setattr(awdata, "_mnist1d_chunk", _fake_mnist1d_chunk)
    cfg = Config(dataset="mnist1d", n_train=100, n_test=50, widths=(8,))
    with pytest.warns(UserWarning, match="degenerate") as record:
        d = load_data(cfg)
    msg = str(record[0].message)
    assert str(path) in msg and ("all zero" in msg if damage == "all zero" else "one class" in msg)
    assert d.n_classes == 10 and d.x_train.abs().sum() > 0
    with np.load(path) as z:  # the file was rewritten with the regenerated chunk
        assert len(np.unique(z["y"])) == 10
    awdata._load.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_data(cfg).n_classes == 10  # read back without a warning


def test_degenerate_generated_mnist1d_is_a_data_error(tmp_path, monkeypatch):
    _mnist1d_cache(tmp_path, monkeypatch)
    zeros = lambda seed: tuple(np.zeros_like(a) for a in _fake_mnist1d_chunk(seed))
    monkeypatch.setattr(awdata, "_mnist1d_chunk", zeros)
    with pytest.raises(DataError, match="seed 42 gave degenerate data: x is all zero"):
        load_data(Config(dataset="mnist1d", n_train=100, n_test=50, widths=(8,)))


# --- item 10: every integer field is bounded ------------------------------------------------


def _integer_fields() -> list[str]:
    default = Config()
    out = []
    for f in fields(Config):
        v = getattr(default, f.name)
        if (isinstance(v, int) and not isinstance(v, bool)) or f.name in (
            "max_epochs",
            "weight_decay_epochs",
            "widths",
        ):
            out.append(f.name)
    return out


def test_integer_fields_are_all_covered():
    assert set(_integer_fields()) == {
        "n_train",
        "n_test",
        "widths",
        "batch_size",
        "weight_decay_epochs",
        "max_epochs",
        "stop_window",
        "seed",
        "pairing_k",
        "n_sharp",
        "n_learners",
        "local_steps",
    }


@pytest.mark.parametrize("name", _integer_fields())
@pytest.mark.parametrize("value", [2**63, "1e20", 2**31, 1e300])
def test_huge_integers_are_rejected(name, value):
    given = [value, value] if name == "widths" else value
    with pytest.raises(ConfigError) as info:
        Config(**{name: given})
    msg = str(info.value)
    assert f"Config.{name}=" in msg and str(value) in msg
    assert str(INT_MAX) in msg  # the allowed range


@pytest.mark.parametrize("name", _integer_fields())
def test_largest_integer_is_accepted(name):
    if name == "widths":
        assert Config(widths=[INT_MAX]).widths == (INT_MAX,)
        return
    extra = {"n_train": INT_MAX} if name == "n_learners" else {}
    extra.update({"algorithm": "ssgd"} if name == "n_learners" else {})
    assert getattr(Config(**{name: INT_MAX, **extra}), name) == INT_MAX


def test_the_existing_lower_bound_message_stays():
    with pytest.raises(ConfigError, match=r"Config.batch_size=0 .*integer >= 1 and <= 2147483647"):
        Config(batch_size=0)


# --- item 15: plan-time checks, before any training -----------------------------------------


def _no_training(monkeypatch):
    """Planning must not train: any call of train_stacked fails the test."""
    from awbench.training import stacked

    def boom(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(stacked, "train_stacked", boom)


def test_cuda_without_cuda_fails_at_plan_time(monkeypatch):
    _no_training(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = Config.preset("smoke").replace(device="cuda")
    with pytest.raises(
        ConfigError, match=r"Config.device='cuda' is not allowed: .*'cpu' or 'auto'"
    ):
        plan_sweep({"lr": [0.1, 0.05]}, base=cfg)
    with pytest.raises(ConfigError, match="device='cuda'"):
        cfg.resolved_device()  # a single run fails before its first epoch too
    assert cfg.replace(device="auto").resolved_device() == "cpu"


@pytest.mark.parametrize("typed", ["~/awbench-no-such-folder-4d1e", "relative/no/such/folder"])
def test_missing_data_dir_fails_at_plan_time_as_typed(monkeypatch, typed):
    _no_training(monkeypatch)
    base = Config(dataset="mnist", data_dir=typed, n_train=30, n_test=10, widths=(8,))
    with pytest.raises(DataError) as info:
        plan_sweep({"lr": [0.1]}, base=base)
    msg = str(info.value)
    assert f"Config.data_dir={typed!r}" in msg and "does not exist" in msg
    assert "download" in msg


def test_data_dir_that_is_a_file(tmp_path):
    target = tmp_path / "afile"
    target.write_text("x")
    with pytest.raises(DataError, match="is not a folder"):
        check_inputs(idx_config(target))


def test_n_test_larger_than_the_idx_pool_fails_at_plan_time(tmp_path, monkeypatch):
    _no_training(monkeypatch)
    folder = idx_folder(tmp_path / "data", n_test=20)
    with pytest.raises(ConfigError) as info:
        plan_sweep({"n_test": [10, 21]}, base=idx_config(folder))
    msg = str(info.value)
    assert "Config.n_test=21" in msg and "at most 20" in msg


def test_n_train_larger_than_the_idx_files_fails_at_plan_time(tmp_path, monkeypatch):
    _no_training(monkeypatch)
    folder = idx_folder(tmp_path / "data", n_train=60)
    with pytest.raises(ConfigError, match=r"Config.n_train=61 .*has 60"):
        plan_sweep({"n_train": [61]}, base=idx_config(folder))


@pytest.mark.parametrize(("dataset", "limit"), [("digits", 500), ("mnist1d", 1000)])
def test_n_test_larger_than_builtin_pool_fails_at_plan_time(monkeypatch, dataset, limit):
    _no_training(monkeypatch)
    base = Config(dataset=dataset, n_train=100, n_test=10, widths=(8,))
    with pytest.raises(ConfigError) as info:
        plan_sweep({"n_test": [limit + 1]}, base=base)
    assert f"Config.n_test={limit + 1}" in str(info.value) and f"at most {limit}" in str(info.value)
    assert len(plan_sweep({"n_test": [limit]}, base=base)) == 1


def test_mismatched_image_sizes_fail_at_plan_time(tmp_path, monkeypatch):
    _no_training(monkeypatch)
    folder = idx_folder(tmp_path / "data", side=4, test_side=5)
    with pytest.raises(DataError) as info:
        plan_sweep({"lr": [0.1]}, base=idx_config(folder))
    msg = str(info.value)
    assert "4x4" in msg and "5x5" in msg
    assert IDX_FILES["train_images"] in msg and IDX_FILES["test_images"] in msg
    with pytest.raises(DataError, match="differ in size"):
        load_data(idx_config(folder))


def test_idx_header_overflow_is_a_data_error(tmp_path):
    # Four dims of 65536: 2**64 bytes, which numpy's int64 product wraps to 0.
    path = tmp_path / "overflow"
    path.write_bytes(bytes([0, 0, 0x08, 4]) + struct.pack(">4I", *(65536,) * 4))
    with pytest.raises(DataError) as info:
        read_idx(path)
    msg = str(info.value)
    assert str(path) in msg and "(65536, 65536, 65536, 65536)" in msg and str(2**64) in msg


def test_idx_header_overflow_fails_at_plan_time(tmp_path, monkeypatch):
    _no_training(monkeypatch)
    folder = idx_folder(tmp_path / "data")
    target = folder / IDX_FILES["train_images"]
    target.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**16))
    with pytest.raises(DataError, match="damaged header") as info:
        plan_sweep({"lr": [0.1]}, base=idx_config(folder))
    assert str(target) in str(info.value)


def test_good_idx_folder_plans(tmp_path):
    folder = idx_folder(tmp_path / "data")
    sweep = plan_sweep({"n_train": [30, 40]}, base=idx_config(folder), seeds=2)
    assert len(sweep) == 4 and len(set(sweep.config_keys())) == 4


def test_field_names_cover_the_config():
    assert "data_dir" in FIELD_NAMES
