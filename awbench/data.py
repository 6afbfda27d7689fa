"""Datasets and the paper's label-noise scheme.

Every dataset is split into a fixed test block and a fixed training pool; a run takes the first
samples of the pool, so the data subset never depends on ``Config.seed`` (only init, batch order
and dropout do), as in the authors' demo.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from awbench.config import (
    FILE_DATASETS,
    IDX_FILES,
    Config,
    ConfigError,
    DataError,
    data_fingerprint,
    idx_paths,
)

# Fixed seeds for everything about the data: the subset and the corrupted labels stay the same
# across Config.seed, which only moves init, batch order and dropout.
DATA_SEED = 20220321
DEMO_SUBSET_SEED = 1  # the authors' demo: np.random.seed(1); np.random.permutation(60000)
MNIST1D_TEST_SEED = 42  # the package's own default seed: its standard 1000 test samples
TEACHER_FEATURES, TEACHER_HIDDEN, TEACHER_CLASSES = 20, 64, 10
DIGITS_N_TEST = 500  # the digits' fixed test block; the other 1297 images are the pool
MNIST1D_N_TEST = 1000  # test samples of the standard MNIST-1D (seed 42)
MNIST1D_FEATURES = 40
IDX_CLASSES = 10  # MNIST and Fashion-MNIST: labels 0..9


@dataclass(frozen=True)
class Data:
    """Tensors of one run. ``clean`` marks training samples whose label was not corrupted."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    clean: torch.Tensor
    # Classes of the whole dataset, not of this subset (a small subset may miss the last one).
    n_classes: int | None = None

    def __post_init__(self) -> None:
        if self.n_classes is None:
            seen = int(max(self.y_train.max().item(), self.y_test.max().item()) + 1)
            object.__setattr__(self, "n_classes", seen)

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def x_clean(self) -> torch.Tensor:
        return self.x_train[self.clean]

    @property
    def y_clean(self) -> torch.Tensor:
        return self.y_train[self.clean]


# --- sources: each returns (x_pool, y_pool, x_test, y_test) as float32 / int64 numpy ------


def _digits(n_pool: int) -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(DATA_SEED).permutation(len(y))
    test, pool = order[:DIGITS_N_TEST], order[DIGITS_N_TEST:]
    return x[pool], y[pool], x[test], y[test]


def _mnist1d_chunk(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    d = make_dataset(args)
    return (
        d["x"].astype(np.float32),
        d["y"].astype(np.int64),
        d["x_test"].astype(np.float32),
        d["y_test"].astype(np.int64),
    )


def _mnist1d(n_pool: int) -> tuple[np.ndarray, ...]:
    # The standard dataset (seed 42) gives 4000 train / 1000 test; larger pools append the
    # samples of further generator seeds so the first 4000 and the test set never change.
    cached = _cached_mnist1d_chunk(MNIST1D_TEST_SEED)
    xs, ys = [cached[0], cached[2][:0]], [cached[1], cached[3][:0]]
    x_test, y_test = cached[2], cached[3]
    seed = MNIST1D_TEST_SEED
    while sum(len(a) for a in ys) < n_pool:
        seed += 1
        chunk = _cached_mnist1d_chunk(seed)
        xs += [chunk[0], chunk[2]]
        ys += [chunk[1], chunk[3]]
    return np.concatenate(xs), np.concatenate(ys), x_test, y_test


def _mnist1d_problem(x, y, x_test, y_test) -> str | None:
    """Why four MNIST-1D arrays are not a usable chunk (None when they are)."""
    for name, a, labels in (("x", x, y), ("x_test", x_test, y_test)):
        if a.ndim != 2 or a.shape[1] != MNIST1D_FEATURES or len(a) == 0:
            return f"{name} has shape {a.shape}, expected (N, {MNIST1D_FEATURES})"
        if labels.shape != (len(a),):
            return f"{name} has {len(a)} rows but its labels have shape {labels.shape}"
        if not np.isfinite(a).all():
            return f"{name} holds NaN or inf"
        if not a.any():
            return f"{name} is all zero"
    for name, labels in (("y", y), ("y_test", y_test)):
        if labels.min() < 0 or labels.max() >= 10:
            return f"{name} holds label {int(labels.min() if labels.min() < 0 else labels.max())}, expected 0..9"
    if len(np.unique(y)) < 2:
        return f"y holds one class only ({int(y[0])})"
    return None


def _cached_mnist1d_chunk(seed: int) -> tuple[np.ndarray, ...]:
    """One MNIST-1D chunk from the file cache; an unreadable or degenerate file (all zero, one
    class, labels outside 0..9, ...) is regenerated, with a warning naming it."""
    from awbench.cache import cache_dir

    path = cache_dir() / "data" / f"mnist1d_seed{seed}.npz"
    if path.exists():
        try:
            with np.load(path) as z:
                arrays = z["x"], z["y"], z["x_test"], z["y_test"]
        except Exception:  # noqa: BLE001 - a corrupt cache entry of any kind is regenerated
            path.unlink(missing_ok=True)
        else:
            problem = _mnist1d_problem(*arrays)
            if problem is None:
                return arrays
            warnings.warn(
                f"cached MNIST-1D file {path} is degenerate ({problem}): regenerating it",
                stacklevel=2,
            )
            path.unlink(missing_ok=True)
    x, y, xt, yt = _mnist1d_chunk(seed)
    problem = _mnist1d_problem(x, y, xt, yt)
    if problem is not None:
        raise DataError(f"MNIST-1D generator seed {seed} gave degenerate data: {problem}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, x=x, y=y, x_test=xt, y_test=yt)
    os.replace(tmp, path)
    return x, y, xt, yt


def _teacher(n_pool: int, n_test: int) -> tuple[np.ndarray, ...]:
    """Gaussian inputs labelled by the argmax of a fixed random tanh teacher MLP."""
    rng = np.random.default_rng(DATA_SEED)
    w1 = rng.standard_normal((TEACHER_FEATURES, TEACHER_HIDDEN)) / np.sqrt(TEACHER_FEATURES)
    w2 = rng.standard_normal((TEACHER_HIDDEN, TEACHER_CLASSES)) / np.sqrt(TEACHER_HIDDEN)

    def draw(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.random.default_rng(seed).standard_normal((n, TEACHER_FEATURES))
        y = np.argmax(np.tanh(x @ w1) @ w2, axis=1)
        return x.astype(np.float32), y.astype(np.int64)

    x_pool, y_pool = draw(n_pool, DATA_SEED + 1)
    x_test, y_test = draw(n_test, DATA_SEED + 2)
    return x_pool, y_pool, x_test, y_test


# --- IDX files (MNIST, Fashion-MNIST; names in awbench.config.IDX_FILES) -------------------

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (raw or gzip) into a numpy array, checking magic number and size."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(
            f"{path} is not an IDX file: bad magic number {raw[:4].hex() or '(empty)'} "
            "(expected 0x0000 then a type byte 08/09/0B/0C/0D/0E and the number of dimensions)"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: header needs {header} bytes, file has {len(raw)}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    # Exact Python integers: numpy's int64 product wraps around for a damaged header (four dims
    # of 65536 "need" 0 bytes), which then failed in reshape with numpy's own error.
    expected = math.prod(shape) * dtype.itemsize
    if expected > len(raw):
        raise DataError(
            f"{path} has a damaged header or is truncated: its header declares shape {shape}, "
            f"{expected} data bytes, the file has {len(raw) - header}"
        )
    if len(raw) - header != expected:
        raise DataError(
            f"{path} is truncated or padded: shape {shape} needs {expected} data bytes, "
            f"file has {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _idx_arrays(name: str, data_dir: str) -> dict[str, np.ndarray]:
    """The four IDX arrays of ``name``, checked: N images of one size per split, N labels in
    0..9, and the same image size in train and test. DataError names the file and the value."""
    paths = idx_paths(name, data_dir)
    arrays = {k: read_idx(paths[k]) for k in IDX_FILES}
    for split in ("train", "test"):
        imgs, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if imgs.ndim != 3 or labels.ndim != 1 or len(imgs) != len(labels):
            raise DataError(
                f"{name} {split} IDX files disagree: images {imgs.shape}, labels {labels.shape} "
                "(expected (N, rows, cols) images and N labels)"
            )
        bad = np.flatnonzero((labels < 0) | (labels >= IDX_CLASSES))
        if len(bad):
            raise DataError(
                f"{paths[f'{split}_labels']} holds label {labels[bad[0]].item()!r} at index "
                f"{bad[0]} ({len(bad)} labels out of range in all): {name} labels must be "
                f"0..{IDX_CLASSES - 1}"
            )
    train_size, test_size = arrays["train_images"].shape[1:], arrays["test_images"].shape[1:]
    if train_size != test_size:
        raise DataError(
            f"{name} train and test images differ in size: {paths['train_images']} holds "
            f"{train_size[0]}x{train_size[1]} images, {paths['test_images']} "
            f"{test_size[0]}x{test_size[1]}"
        )
    return arrays


@functools.lru_cache(maxsize=8)
def _idx_sizes(name: str, data_dir: str, fingerprint: str) -> tuple[int, int]:
    """(training pool, test samples) of checked IDX files; ``fingerprint`` keys the cache."""
    arrays = _idx_arrays(name, data_dir)
    return len(arrays["train_labels"]), len(arrays["test_labels"])


def _idx_dataset(name: str, data_dir: str) -> tuple[np.ndarray, ...]:
    arrays = _idx_arrays(name, data_dir)
    flat = lambda a: a.reshape(len(a), -1).astype(np.float32) / 255.0
    x_train, y_train = flat(arrays["train_images"]), arrays["train_labels"].astype(np.int64)
    # The demo's training subset: numpy's legacy generator seeded with 1 permutes the training
    # images and the first n_train are taken (docs/science.md#4-the-demo-protocol-and-awbenchs-presets).
    order = np.random.RandomState(DEMO_SUBSET_SEED).permutation(len(y_train))
    return (
        x_train[order],
        y_train[order],
        flat(arrays["test_images"]),
        arrays["test_labels"].astype(np.int64),
    )


# --- assembling a run's data --------------------------------------------------------------


def n_total_train(n_train: int, label_noise: float) -> int:
    """Training samples including the corrupted extras, so that ``n_train`` stay clean."""
    return round(n_train / (1.0 - label_noise))


def corrupt_labels(y: np.ndarray, n_clean: int, n_classes: int, seed: int = DATA_SEED):
    """The demo's label noise: samples ``n_clean:`` (the appended block) get wrong labels.

    The block's labels are permuted among themselves, then any label that landed on its own
    true class is moved by a random 1..n_classes-1, so no corrupted label is the true one and
    the block keeps roughly its class mix. The first ``n_clean`` samples are untouched, so
    the clean set is the same at every noise level (docs/science.md#6-sweeps).
    Returns the new labels and the clean mask.
    """
    if not 0 <= n_clean <= len(y):
        raise ValueError(f"n_clean={n_clean} is not allowed: expected 0 <= n_clean <= {len(y)}")
    rng = np.random.default_rng(seed)
    true = y[n_clean:]
    wrong = true[rng.permutation(len(true))]
    same = wrong == true
    wrong[same] = (true[same] + rng.integers(1, n_classes, size=int(same.sum()))) % n_classes
    y_new = y.copy()
    y_new[n_clean:] = wrong
    clean = np.zeros(len(y), dtype=bool)
    clean[:n_clean] = True
    return y_new, clean


def _check_sizes(
    dataset: str, n_train: int, n_test: int, label_noise: float, pool: int | None, tests: int | None
) -> None:
    """ConfigError when a pool of ``pool`` training / ``tests`` test samples (None: any
    number) cannot supply the run."""
    n_total = n_total_train(n_train, label_noise)
    if pool is not None and n_total > pool:
        need = (
            f"n_train={n_train}"
            if label_noise == 0
            else f"n_train={n_train} clean + {n_total - n_train} corrupted for label_noise={label_noise}"
        )
        raise ConfigError(
            f"Config.n_train={n_train} is not allowed for dataset={dataset!r}: {need} needs "
            f"{n_total} training samples, the dataset has {pool}"
        )
    if tests is not None and n_test > tests:
        raise ConfigError(
            f"Config.n_test={n_test} is not allowed for dataset={dataset!r}: "
            f"expected at most {tests} test samples"
        )


def check_inputs(cfg: Config) -> None:
    """Everything a run needs beyond a valid Config, checked before any training (sweeps call
    it at plan time): the device exists, data_dir holds four readable, consistent IDX files
    (labels 0..9, one image size), and the dataset has n_train and n_test samples.
    Raises ConfigError or DataError naming the field or file and the value as given."""
    cfg.resolved_device()
    if cfg.dataset in FILE_DATASETS:
        fingerprint = data_fingerprint(cfg.dataset, cfg.data_dir)
        pool, tests = _idx_sizes(cfg.dataset, cfg.data_dir, fingerprint)
    elif cfg.dataset == "digits":
        pool, tests = None, DIGITS_N_TEST  # the pool is checked at load (and by sweep plans)
    elif cfg.dataset == "mnist1d":
        pool, tests = None, MNIST1D_N_TEST  # further generator seeds extend the pool
    else:
        pool, tests = None, None  # the teacher draws any number
    _check_sizes(cfg.dataset, cfg.n_train, cfg.n_test, cfg.label_noise, pool, tests)


@functools.lru_cache(maxsize=8)
def _load(
    dataset: str, data_dir: str, fingerprint: str, n_train: int, n_test: int, label_noise: float
) -> Data:
    """``fingerprint`` (of the files behind data_dir; "" for built-in datasets) keys the cache,
    so that replaced files are read again."""
    n_total = n_total_train(n_train, label_noise)
    n_classes = None
    if dataset == "digits":
        x_pool, y_pool, x_test, y_test = _digits(n_total)
    elif dataset == "mnist1d":
        x_pool, y_pool, x_test, y_test = _mnist1d(n_total)
    elif dataset == "teacher":
        x_pool, y_pool, x_test, y_test = _teacher(n_total, n_test)
    else:
        x_pool, y_pool, x_test, y_test = _idx_dataset(dataset, data_dir)
        n_classes = IDX_CLASSES  # the dataset's classes, even if the files miss one
    _check_sizes(dataset, n_train, n_test, label_noise, len(y_pool), len(y_test))
    if n_classes is None:
        n_classes = int(max(y_pool.max(), y_test.max()) + 1)
    if n_classes < 2:
        raise DataError(f"dataset={dataset!r} has a single class: every label is {n_classes - 1}")
    y_train, clean = y_pool[:n_total], np.ones(n_total, dtype=bool)
    if label_noise > 0:
        y_train, clean = corrupt_labels(y_train, n_train, n_classes)
    return Data(
        name=dataset,
        x_train=torch.from_numpy(np.ascontiguousarray(x_pool[:n_total])),
        y_train=torch.from_numpy(np.ascontiguousarray(y_train)),
        x_test=torch.from_numpy(np.ascontiguousarray(x_test[:n_test])),
        y_test=torch.from_numpy(np.ascontiguousarray(y_test[:n_test])),
        clean=torch.from_numpy(clean),
        n_classes=n_classes,
    )


def load_data(cfg: Config) -> Data:
    """The training and test tensors ``cfg`` asks for (cached in process; never mutate)."""
    fingerprint = (
        data_fingerprint(cfg.dataset, cfg.data_dir) if cfg.dataset in FILE_DATASETS else ""
    )
    return _load(cfg.dataset, cfg.data_dir, fingerprint, cfg.n_train, cfg.n_test, cfg.label_noise)
