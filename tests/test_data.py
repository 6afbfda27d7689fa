"""Datasets: the IDX reader on written files, IDX datasets, digits, teacher, mnist1d, label noise."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import awbench
from awbench import data as awdata
from awbench.config import Config, ConfigError
from awbench.data import IDX_FILES, DataError, corrupt_labels, load_data, n_total_train, read_idx

# --- writing IDX fixtures ------------------------------------------------------------------

IDX_TYPE = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(">i2"): 0x0B,
    np.dtype(">i4"): 0x0C,
    np.dtype(">f4"): 0x0D,
    np.dtype(">f8"): 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array``: 0x0000, type byte, ndim, big-endian dims, big-endian data."""
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    header = bytes([0, 0, IDX_TYPE[dtype], array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    return header + array.astype(dtype).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def fake_idx_folder(folder: Path, n_train=60, n_test=20, side=4, gz=False) -> Path:
    """Four IDX files in the standard names. Image i has every pixel equal to its index in its
    split (train 0..59, test 100..119) and label i % 10, so tests can check image-label pairing."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, n, offset in (("train", n_train, 0), ("test", n_test, 100)):
        index = np.arange(n) + offset
        images = np.broadcast_to(index[:, None, None], (n, side, side)).astype(np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / (IDX_FILES[f"{split}_images"] + suffix), images)
        write_idx(folder / (IDX_FILES[f"{split}_labels"] + suffix), labels)
    return folder


# --- read_idx ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_images_and_labels(tmp_path, suffix):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7).astype(np.uint8)
    got_images = read_idx(write_idx(tmp_path / f"imgs{suffix}", images))
    got_labels = read_idx(write_idx(tmp_path / f"labels{suffix}", labels))
    assert got_images.dtype == np.uint8 and got_images.shape == (7, 5, 3)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


@pytest.mark.parametrize("dtype", [np.int8, ">i2", ">i4", ">f4", ">f8"])
def test_read_idx_other_types_big_endian(tmp_path, dtype):
    values = (np.arange(24).reshape(2, 3, 4) - 12).astype(dtype)
    got = read_idx(write_idx(tmp_path / "x.idx", values))
    np.testing.assert_array_equal(got, values)
    assert got.shape == (2, 3, 4)


def test_read_idx_truncated_data(tmp_path):
    raw = idx_bytes(np.zeros((3, 4, 4), dtype=np.uint8))
    path = tmp_path / "short"
    path.write_bytes(raw[:-5])
    with pytest.raises(DataError) as info:
        read_idx(path)
    msg = str(info.value)
    assert "truncated" in msg and str(path) in msg
    assert "(3, 4, 4)" in msg and "48" in msg and "43" in msg  # needed vs present bytes


def test_read_idx_padded_data(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(np.zeros(5, dtype=np.uint8)) + b"\0")
    with pytest.raises(DataError, match="padded"):
        read_idx(path)


def test_read_idx_truncated_header(tmp_path):
    path = tmp_path / "head"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">I", 60))  # 3 dims announced, 1 given
    with pytest.raises(DataError, match="truncated") as info:
        read_idx(path)
    assert "16" in str(info.value)  # bytes the header needs


def test_read_idx_truncated_gzip(tmp_path):
    packed = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8)))
    path = tmp_path / "cut.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "head, shown",
    [
        (bytes([0x1F, 0x8B, 0x08, 0x00]), "1f8b0800"),  # a gzip file without the .gz suffix
        (bytes([0, 1, 8, 1]), "00010801"),
        (bytes([0, 0, 0x07, 1]), "00000701"),  # unknown type byte
        (b"P5\n4", "50350a34"),  # some other image format
    ],
)
def test_read_idx_wrong_magic_number(tmp_path, head, shown):
    path = tmp_path / "bad"
    path.write_bytes(head + struct.pack(">I", 4) + bytes(4))
    with pytest.raises(DataError) as info:
        read_idx(path)
    msg = str(info.value)
    assert "magic number" in msg and shown in msg and str(path) in msg


def test_read_idx_empty_file(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="magic number"):
        read_idx(path)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="nothing-here"):
        read_idx(tmp_path / "nothing-here")


# --- IDX datasets (mnist, fashion_mnist) through Config ------------------------------------


def idx_config(folder, **kw) -> Config:
    base = {
        "dataset": "mnist",
        "data_dir": str(folder),
        "n_train": 30,
        "n_test": 10,
        "widths": (8,),
    }
    return Config(**{**base, **kw})


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_idx_dataset_loads(tmp_path, dataset, gz):
    folder = fake_idx_folder(tmp_path / "idx", gz=gz)
    d = load_data(idx_config(folder, dataset=dataset))
    assert d.name == dataset
    assert d.x_train.shape == (30, 16) and d.x_test.shape == (10, 16)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.clean.dtype == torch.bool and bool(d.clean.all())
    # pixels/255, and every image still carries its own label
    index = (d.x_train[:, 0] * 255).round().long()
    assert torch.allclose(d.x_train * 255, index[:, None].float().expand(-1, 16), atol=1e-4)
    assert torch.equal(d.y_train, index % 10)
    assert len(set(index.tolist())) == 30 and index.max() < 60  # distinct training images
    # the test block is the first n_test test images, in file order
    assert torch.equal((d.x_test[:, 0] * 255).round().long(), torch.arange(100, 110))
    assert torch.equal(d.y_test, torch.arange(10) % 10)


def test_idx_training_subset_is_fixed_and_nested(tmp_path):
    folder = fake_idx_folder(tmp_path / "idx")
    a = load_data(idx_config(folder, seed=0))
    b = load_data(idx_config(folder, seed=123))
    c = load_data(idx_config(folder, n_train=50))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert torch.equal(c.x_train[:30], a.x_train)  # a larger n_train extends the subset
    # ... and it is a random draw, not the first images of the file
    assert not torch.equal((a.x_train[:, 0] * 255).round().long(), torch.arange(30))


def test_idx_dataset_trains(tmp_path):
    folder = fake_idx_folder(tmp_path / "idx")
    run = awbench.train(idx_config(folder, max_epochs=2, batch_size=10))
    assert run.epochs == 2 and run.model.fc1.in_features == 16 and run.model.fc2.out_features == 10


@pytest.mark.parametrize("missing", sorted(IDX_FILES.values()))
def test_idx_missing_file_names_file_and_folder(tmp_path, missing):
    folder = fake_idx_folder(tmp_path / "idx")
    (folder / missing).unlink()
    with pytest.raises(DataError) as info:
        load_data(idx_config(folder))
    msg = str(info.value)
    assert missing in msg and str(folder) in msg
    assert "download" in msg  # how to get it


def test_idx_needs_data_dir():
    with pytest.raises(DataError, match="data_dir") as info:
        load_data(Config(dataset="fashion_mnist", data_dir="", n_train=30, n_test=10))
    assert "t10k-images-idx3-ubyte" in str(info.value)


def test_idx_corrupt_file_in_dataset(tmp_path):
    folder = fake_idx_folder(tmp_path / "idx")
    target = folder / IDX_FILES["train_labels"]
    target.write_bytes(target.read_bytes()[:-1])
    with pytest.raises(DataError, match="truncated") as info:
        load_data(idx_config(folder))
    assert IDX_FILES["train_labels"] in str(info.value)


def test_idx_images_and_labels_disagree(tmp_path):
    folder = fake_idx_folder(tmp_path / "idx")
    write_idx(folder / IDX_FILES["test_labels"], np.zeros(19, dtype=np.uint8))
    with pytest.raises(DataError, match="disagree"):
        load_data(idx_config(folder))


def test_idx_n_train_exceeds_file(tmp_path):
    folder = fake_idx_folder(tmp_path / "idx")
    with pytest.raises(ConfigError, match="n_train=61") as info:
        load_data(idx_config(folder, n_train=61))
    assert "60" in str(info.value)
    with pytest.raises(ConfigError, match="n_test"):
        load_data(idx_config(folder, n_test=21))


# --- digits --------------------------------------------------------------------------------


def test_digits_split_sizes():
    d = load_data(Config())
    assert d.x_train.shape == (1297, 64) and d.x_test.shape == (500, 64)
    assert d.n_features == 64 and d.n_classes == 10
    assert 0.0 <= float(d.x_train.min()) and float(d.x_train.max()) <= 1.0
    assert bool(d.clean.all()) and torch.equal(d.x_clean, d.x_train)
    assert set(d.y_train.tolist()) == set(range(10)) == set(d.y_test.tolist())


def test_digits_subset_fixed_independent_of_seed():
    full = load_data(Config())
    other_seed = load_data(Config(seed=99))
    small = load_data(Config(n_train=100, n_test=50, seed=3))
    assert torch.equal(full.x_train, other_seed.x_train) and torch.equal(
        full.y_test, other_seed.y_test
    )
    assert torch.equal(small.x_train, full.x_train[:100]) and torch.equal(
        small.y_train, full.y_train[:100]
    )
    assert torch.equal(small.x_test, full.x_test[:50])
    # the fixed split is shuffled: not simply the first 500 digits of sklearn's file
    from sklearn.datasets import load_digits

    assert not np.array_equal(full.y_test.numpy(), load_digits().target[:500])


def test_digits_n_train_exceeds_pool():
    with pytest.raises(ConfigError) as info:
        load_data(Config(n_train=1298))
    assert "n_train=1298" in str(info.value) and "1297" in str(info.value)


def test_digits_label_noise_exceeds_pool():
    with pytest.raises(ConfigError) as info:
        load_data(Config(n_train=1297, label_noise=0.1))
    msg = str(info.value)
    assert "n_train=1297" in msg and "corrupted" in msg and "1441" in msg


def test_n_classes_is_the_datasets_not_the_subsets():
    d = load_data(Config(n_train=10, n_test=1))  # the first 10 pool digits have no 9
    assert d.n_classes == 10


def test_n_test_exceeds_digits():
    with pytest.raises(ConfigError, match="n_test"):
        load_data(Config(n_test=501))


# --- label noise ---------------------------------------------------------------------------


@pytest.mark.parametrize("rho", [0.091, 0.13, 0.167, 0.2, 0.5])
@pytest.mark.parametrize("dataset, n_train", [("digits", 600), ("teacher", 1000)])
def test_label_noise_invariants(dataset, n_train, rho):
    noisy = load_data(Config(dataset=dataset, n_train=n_train, label_noise=rho, widths=(8,)))
    n_total = round(n_train / (1 - rho))
    assert len(noisy.y_train) == len(noisy.x_train) == len(noisy.clean) == n_total
    assert int(noisy.clean.sum()) == n_train  # the clean count stays n_train
    # the same samples without corruption: the first n_total of the pool
    pool = load_data(Config(dataset=dataset, n_train=n_total, label_noise=0, widths=(8,)))
    assert torch.equal(noisy.x_train, pool.x_train)
    assert torch.equal(noisy.y_train[noisy.clean], pool.y_train[noisy.clean])
    corrupted = ~noisy.clean
    assert bool((noisy.y_train[corrupted] != pool.y_train[corrupted]).all())  # never the true one
    assert 0 <= int(noisy.y_train.min()) and int(noisy.y_train.max()) < 10
    assert abs(float(corrupted.double().mean()) - rho) <= 1.0 / n_total
    assert torch.equal(noisy.x_clean, noisy.x_train[noisy.clean])
    assert torch.equal(noisy.x_test, pool.x_test) and torch.equal(noisy.y_test, pool.y_test)


def test_label_noise_is_fixed_independent_of_seed():
    a = load_data(Config(n_train=600, label_noise=0.2, seed=0))
    b = load_data(Config(n_train=600, label_noise=0.2, seed=5))
    assert torch.equal(a.y_train, b.y_train) and torch.equal(a.clean, b.clean)


def test_corrupted_labels_spread_over_wrong_classes():
    y = np.tile(np.arange(10), 500)  # every class in the corrupted block
    y_new, clean = corrupt_labels(y, 2500, 10)
    assert bool(clean[:2500].all()) and not bool(clean[2500:].any())
    assert np.array_equal(y_new[:2500], y[:2500])
    shifts = (y_new[~clean] - y[~clean]) % 10
    assert set(shifts.tolist()) == set(range(1, 10))  # every wrong class is reachable
    counts = np.bincount(shifts, minlength=10)[1:]
    assert counts.min() > 0.6 * counts.mean()  # roughly uniform


def test_corrupt_labels_rejects_bad_clean_count():
    with pytest.raises(ValueError, match="n_clean=11"):
        corrupt_labels(np.zeros(10, dtype=np.int64), 11, 10)


def test_clean_count_identity_for_many_sizes():
    for n_train in range(10, 3000, 37):
        for rho in (0.0, 0.05, 0.091, 0.13, 0.167, 0.2, 0.333, 0.5, 0.9):
            n = n_total_train(n_train, rho)
            y = np.arange(n, dtype=np.int64) % 10
            y_new, clean = corrupt_labels(y, n_train, 10, seed=n_train)
            assert int(clean.sum()) == n_train, (n_train, rho)
            assert bool((y_new[~clean] != y[~clean]).all())


@pytest.mark.parametrize("dataset, n_train", [("digits", 1000), ("teacher", 800)])
def test_clean_set_is_the_same_at_every_noise_level(dataset, n_train):
    """As in the demo, noise appends corrupted samples: the clean samples never change with rho."""
    cfg = Config(dataset=dataset, n_train=n_train, widths=(8,))
    base = load_data(cfg)
    for rho in (0.091, 0.13, 0.167, 0.2):
        noisy = load_data(cfg.replace(label_noise=rho))
        assert torch.equal(noisy.x_clean, base.x_train) and torch.equal(noisy.y_clean, base.y_train)
        assert bool(noisy.clean[:n_train].all()) and not bool(noisy.clean[n_train:].any())


def test_paper_mnist_takes_the_demos_training_subset(tmp_path):
    """The demo permutes the 60000 training images with numpy's legacy generator seeded with 1
    and keeps the first 4000; the test set is the first 1000 test images. 1x1 images whose
    pixel encodes the image's index (mod 256) plus labels encoding index // 256 identify it."""
    folder = tmp_path / "idx"
    folder.mkdir()
    index = np.arange(60000)
    write_idx(folder / IDX_FILES["train_images"], (index % 256).astype(np.uint8).reshape(-1, 1, 1))
    write_idx(folder / IDX_FILES["train_labels"], (index // 256 % 10).astype(np.uint8))
    test_index = np.arange(1200)
    write_idx(
        folder / IDX_FILES["test_images"], (test_index % 256).astype(np.uint8).reshape(-1, 1, 1)
    )
    write_idx(folder / IDX_FILES["test_labels"], (test_index % 10).astype(np.uint8))
    cfg = Config.preset("paper-mnist").replace(data_dir=str(folder))
    d = load_data(cfg)
    demo = np.random.RandomState(1).permutation(60000)[:4000]
    pixels = (d.x_train[:, 0] * 255).round().long().numpy()
    assert np.array_equal(pixels, demo % 256)
    assert np.array_equal(d.y_train.numpy(), demo // 256 % 10)
    assert np.array_equal((d.x_test[:, 0] * 255).round().long().numpy(), np.arange(1000) % 256)
    # default_rng(1) draws another subset: the legacy generator is what makes this the demo's
    assert not np.array_equal(np.random.default_rng(1).permutation(60000)[:4000], demo)


# --- teacher, mnist1d ----------------------------------------------------------------------


def test_teacher_deterministic_and_any_size():
    cfg = Config(dataset="teacher", n_train=3000, n_test=700, widths=(8,))
    a = load_data(cfg)
    awdata._load.cache_clear()  # regenerate, not a cached object
    b = load_data(cfg)
    assert a is not b
    for name in ("x_train", "y_train", "x_test", "y_test", "clean"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.x_train.shape == (3000, awdata.TEACHER_FEATURES) and a.x_test.shape == (700, 20)
    assert len(torch.unique(a.y_train)) >= 5  # the teacher uses several classes
    small = load_data(cfg.replace(n_train=100, n_test=700))
    assert torch.equal(small.x_train, a.x_train[:100])
    assert not torch.equal(a.x_train[:700], a.x_test)  # test inputs are a separate draw


@pytest.mark.slow
def test_mnist1d_standard_split_and_cache():
    cfg = Config.preset("mnist1d")
    d = load_data(cfg)
    assert d.x_train.shape == (4000, 40) and d.x_test.shape == (1000, 40)
    assert d.n_classes == 10 and d.x_train.dtype == torch.float32
    from awbench.cache import cache_dir

    assert (cache_dir() / "data" / f"mnist1d_seed{awdata.MNIST1D_TEST_SEED}.npz").exists()
    awdata._load.cache_clear()
    again = load_data(cfg.replace(seed=4, n_train=1000))  # read back from the file cache
    assert torch.equal(again.x_train, d.x_train[:1000]) and torch.equal(again.y_test, d.y_test)
