"""Config: one frozen dataclass for every knob, its presets, validation and stable key.

Field names are the parameter names everywhere (papermill ``-p``, sweep grids, CLI flags,
widget labels, store columns), so this module is the single place that validates them.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import math
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from awbench.activations import ACTIVATIONS as ACTIVATION_TABLE

# Bump when a field's meaning changes so old cache entries and store rows stop matching.
# 2: max_epochs and weight_decay_epochs default to None, the budget in samples seen.
SCHEMA_VERSION = 2

# Bump when the numbers a run produces change (training, analysis, the divergence rule), so
# that cached results computed by older code are recomputed. Kept out of Config.key(): a
# refactor that changes no number orphans no store. Cache entries and store rows record it;
# tests/test_training_run.py holds golden numbers of two fixed small runs (smoke, paper) for
# this version; a bump also means regenerating the shipped knob grid
# (awbench/apps/knobs/store/README.md, checked by tests/test_knob_grid.py).
# 1: the first numbered version (divergence includes the loss bound 10 x ln(n_classes)).
# 2: the engine's stacked products (bmm, layers carry their transposed weights, 0269b10)
#    round differently in float32: paper-preset runs end up to a few 1e-4 apart (the smoke
#    run moves < 1e-6, inside its golden tolerance); the knob grid was regenerated.
NUMERICS_VERSION = 2

# Training budgets of the authors' demo, in samples seen: 1000 epochs and a weight-decay window
# of 200 epochs, each epoch 4000 samples. A dataset of another size keeps the samples seen,
# not the epoch count (docs/science.md, "Budgets").
DEMO_EPOCH_SAMPLES = 4000
DEMO_MAX_EPOCHS = 1000
DEMO_DECAY_EPOCHS = 200
# Deviation from the demo: the automatic budget is twice the demo's samples seen, because on
# the digits some demo settings (batch 400, lr 0.005) need up to 1.7x the demo's budget to meet
# the stopping rule. The weight-decay window keeps the demo's samples seen.
BUDGET_MARGIN = 2
# Tiny training sets would otherwise get hundreds of thousands of epochs of a few steps each.
AUTO_EPOCH_CAP = 20_000

DATASETS = ("digits", "mnist1d", "teacher", "mnist", "fashion_mnist")
ACTIVATIONS = tuple(ACTIVATION_TABLE)
WEIGHT_DECAY_MODES = ("norm", "squared")
PAIRINGS = ("input", "feature", "knn", "random")
DTYPES = ("float32", "float64")
DEVICES = ("cpu", "cuda", "auto")
ALGORITHMS = ("sgd", "ssgd", "dpsgd", "local_sgd")
# the training loss: cross-entropy of the logits, or squared error of the softmax against the
# one-hot label (awbench/nn/losses.py, docs/science.md#11-sgd-noise-against-curvature)
LOSSES = ("ce", "mse")
# Fields added after the key's schema was fixed: at their default they are left out of
# Config.key(), so every key (caches, stores, the shipped knob grid) stays what it was.
KEY_OPTIONAL_DEFAULTS = {"loss": "ce"}
TOPOLOGIES = ("ring", "full", "torus", "gossip")
# Datasets read from IDX files in data_dir; their run key holds a fingerprint of the files'
# contents instead of the path (see data_fingerprint).
FILE_DATASETS = ("mnist", "fashion_mnist")
# Upper bound of every integer field: a signed 32-bit integer. Anything larger is a typo
# (--set batch_size=1e20) and would only fail later, in the int64 store columns or in torch.
INT_MAX = 2**31 - 1


class ConfigError(ValueError):
    """A Config field got a value outside what it allows."""


class DataError(ValueError):
    """A dataset could not be read or does not hold what the Config asks for.

    Defined here, not in awbench.data (which re-exports it), because ``Config.key`` of a
    file-backed dataset reads its files (see :func:`data_fingerprint`)."""


def _fail(name: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"Config.{name}={value!r} is not allowed: expected {allowed}")


def _plain(value: Any) -> Any:
    """numpy/pandas scalars (sweep grids, parquet rows) as the Python number they hold."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()
    return value


def _to_bool(name: str, value: Any) -> bool:
    value = _plain(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    _fail(name, value, "a boolean (true/false)")


def _to_int(name: str, value: Any, allowed: str) -> int:
    value = _plain(value)
    if isinstance(value, bool):
        _fail(name, value, allowed)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            _fail(name, value, allowed)
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            _fail(name, value, allowed)
        value = int(value)
    if not isinstance(value, int):
        _fail(name, value, allowed)
    return value


def _to_float(name: str, value: Any, allowed: str) -> float:
    value = _plain(value)
    if isinstance(value, bool):
        _fail(name, value, allowed)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            _fail(name, value, allowed)
    if not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        _fail(name, value, allowed)
    return float(value)


def _to_choice(choices: tuple[str, ...]) -> Callable[[str, Any], str]:
    def convert(name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            _fail(name, value, "one of " + ", ".join(repr(c) for c in choices))
        return value

    return convert


def _int_range(lo: int, hi: int | None = None) -> Callable[[str, Any], int]:
    """An integer in [lo, hi]; without hi, in [lo, INT_MAX]."""
    allowed = (
        f"an integer >= {lo} and <= {INT_MAX}" if hi is None else f"an integer in [{lo}, {hi}]"
    )
    hi = INT_MAX if hi is None else hi

    def convert(name: str, value: Any) -> int:
        v = _to_int(name, value, allowed)
        if v < lo or v > hi:
            _fail(name, value, allowed)
        return v

    return convert


def _float_range(lo: float, hi: float, lo_open=False, hi_open=False) -> Callable[[str, Any], float]:
    allowed = f"a number in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"

    def convert(name: str, value: Any) -> float:
        v = _to_float(name, value, allowed)
        if v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
            _fail(name, value, allowed)
        return v + 0.0  # -0.0 -> 0.0, so equal configs have equal keys

    return convert


def _auto_int(lo: int) -> Callable[[str, Any], int | None]:
    """An integer >= lo, or None for the automatic budget ("auto", "none", "" read as None)."""
    inner = _int_range(lo)

    def convert(name: str, value: Any) -> int | None:
        value = _plain(value)
        if value is None or (
            isinstance(value, str) and value.strip().lower() in ("auto", "none", "null", "")
        ):
            return None
        if isinstance(value, float) and math.isnan(value):  # a store's missing value
            return None
        try:
            return inner(name, value)
        except ConfigError:
            _fail(
                name,
                value,
                f"None ('auto': the budget in samples seen) or an integer >= {lo} and <= {INT_MAX}",
            )

    return convert


def _widths(name: str, value: Any) -> tuple[int, ...]:
    allowed = f"a non-empty list of integers in [1, {INT_MAX}], e.g. [30, 30]"
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, str):
        text = value.strip().strip("[]()")
        value = [p for p in re.split(r"[,\s]+", text) if p]
    if not isinstance(value, (list, tuple)) or len(value) == 0:
        _fail(name, value, allowed)
    out = tuple(_to_int(name, v, allowed) for v in value)
    if any(w < 1 or w > INT_MAX for w in out):
        _fail(name, value, allowed)
    return out


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        _fail(name, value, "a string (a folder path, may be empty)")
    return value


# --- the files behind a file-backed dataset ------------------------------------------------

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
HOW_TO_GET = (
    "download the four IDX files of {name} (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
    "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; raw or .gz) on a machine with internet "
    "access and put them in data_dir"
)


def idx_paths(dataset: str, data_dir: str) -> dict[str, Path]:
    """The four IDX files (raw or .gz) of ``dataset`` in ``data_dir``, by role.

    Raises DataError naming data_dir as typed (and where it points) and the missing file."""
    how = HOW_TO_GET.format(name=dataset)
    if not data_dir:
        raise DataError(
            f"dataset={dataset!r} needs data_dir, the folder with its IDX files: " + how
        )
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        where = "" if str(folder) == data_dir else f" ({folder.absolute()})"
        what = "is not a folder" if folder.exists() else "does not exist"
        raise DataError(
            f"Config.data_dir={data_dir!r}{where} {what}: dataset={dataset!r} needs a folder "
            "with its IDX files: " + how
        )
    paths = {}
    for role, stem in IDX_FILES.items():
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                paths[role] = candidate
                break
        else:
            raise DataError(
                f"dataset={dataset!r} needs {stem} (or {stem}.gz) in data_dir={data_dir!r} "
                f"({folder}), which does not have it: " + how
            )
    return paths


# (resolved path, size, mtime_ns, inode) -> "bytes:sha256" of the decompressed contents, so
# that each file is hashed once per process, not once per Config.key() call.
_FILE_HASHES: dict[tuple, str] = {}
_FILE_HASHES_LOCK = threading.Lock()


def file_fingerprint(path: Path) -> str:
    """``<bytes>:<sha256>`` of a file's contents (of what it holds after gunzip, for .gz), so
    that a raw and a gzipped copy of the same data are the same data."""
    st = os.stat(path)
    stamp = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    with _FILE_HASHES_LOCK:
        hit = _FILE_HASHES.get(stamp)
    if hit is not None:
        return hit
    digest, n = hashlib.sha256(), 0
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
                n += len(chunk)
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from exc
    value = f"{n}:{digest.hexdigest()}"
    with _FILE_HASHES_LOCK:
        _FILE_HASHES[stamp] = value
    return value


def data_fingerprint(dataset: str, data_dir: str) -> str:
    """What a file-backed dataset's run key holds in place of ``data_dir``: the size and
    sha256 of each of its four IDX files. The same files in another folder, on another machine
    or Dask worker give the same fingerprint; other files give another one."""
    paths = idx_paths(dataset, data_dir)
    lines = [f"{IDX_FILES[role]}={file_fingerprint(paths[role])}" for role in IDX_FILES]
    return "idx-sha256:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()


# One converter per field: it coerces (papermill and YAML hand over strings and lists) and
# raises ConfigError naming the field, the value and what is allowed.
_CONVERTERS: dict[str, Callable[[str, Any], Any]] = {
    "dataset": _to_choice(DATASETS),
    "data_dir": _text,
    "n_train": _int_range(10),
    "n_test": _int_range(1),
    "label_noise": _float_range(0.0, 0.9),
    "widths": _widths,
    "activation": _to_choice(ACTIVATIONS),
    "bias": _to_bool,
    "dropout": _float_range(0.0, 1.0, hi_open=True),
    "init_scale": _float_range(0.0, 1e3, lo_open=True),
    "lr": _float_range(0.0, 1e3, lo_open=True),
    "batch_size": _int_range(1),
    "momentum": _float_range(0.0, 1.0, hi_open=True),
    "weight_decay": _float_range(0.0, 1e3),
    "weight_decay_mode": _to_choice(WEIGHT_DECAY_MODES),
    "weight_decay_epochs": _auto_int(0),
    "max_epochs": _auto_int(1),
    "stop_loss": _float_range(0.0, 1e3, lo_open=True),
    "stop_acc": _float_range(0.0, 1.0),
    "stop_window": _int_range(1),
    "seed": _int_range(0, 2**31 - 1),
    "layer": _text,
    "pairing": _to_choice(PAIRINGS),
    "pairing_k": _int_range(1),
    "n_sharp": _int_range(1),
    "dtype": _to_choice(DTYPES),
    "device": _to_choice(DEVICES),
    "n_learners": _int_range(1),
    "algorithm": _to_choice(ALGORITHMS),
    "topology": _to_choice(TOPOLOGIES),
    "local_steps": _int_range(1),
    "loss": _to_choice(LOSSES),
}


@dataclass(frozen=True)
class Config:
    """Every knob of one awbench run. Immutable; build variants with ``replace``."""

    dataset: str = "digits"  # digits | mnist1d | teacher | mnist | fashion_mnist
    data_dir: str = ""  # folder with IDX files for mnist / fashion_mnist
    n_train: int = 1297  # clean training samples (label noise adds extra corrupted ones)
    n_test: int = 500  # test samples
    label_noise: float = 0.0  # fraction of the training set with a wrong label
    widths: tuple[int, ...] = (30, 30)  # hidden layer widths
    activation: str = "relu"
    bias: bool = False
    dropout: float = 0.0  # dropout probability after the first hidden layer
    init_scale: float = 1.0  # every weight is multiplied by this after default init
    lr: float = 0.1
    batch_size: int = 25
    momentum: float = 0.0
    weight_decay: float = 0.0  # beta
    weight_decay_mode: str = "norm"  # norm: beta*||theta||_2 (paper); squared: classic L2
    # weight decay only in the first N epochs; None: the demo's window in samples seen
    weight_decay_epochs: int | None = None
    max_epochs: int | None = None  # None: twice the demo's samples seen (see epoch_budget)
    stop_loss: float = 1e-3  # stop when clean-train loss is below this ...
    stop_acc: float = 0.99  # ... and mean clean-train accuracy over the window above this
    stop_window: int = 9  # epochs averaged for the accuracy part of the stopping rule
    seed: int = 0  # init, batch order and dropout (the data subset is fixed)
    layer: str = "fc2"  # analysed fully connected layer
    pairing: str = "input"  # input | feature | knn | random
    pairing_k: int = 1  # neighbours per test sample for pairing="knn"
    n_sharp: int = 10  # directions (by sigma_g) counted as the sharp part of the gap
    dtype: str = "float32"  # training dtype; analysis is always float64
    device: str = "cpu"  # cpu | cuda | auto
    n_learners: int = 1  # multi-learner training (1: plain SGD)
    algorithm: str = "sgd"  # sgd | ssgd | dpsgd | local_sgd
    topology: str = "ring"  # mixing graph for dpsgd
    local_steps: int = 8  # averaging period H for local_sgd
    loss: str = "ce"  # ce: cross-entropy | mse: squared error of the softmax (one-hot target)

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _CONVERTERS[f.name](f.name, getattr(self, f.name)))
        n_layers = len(self.widths) + 1
        allowed_layers = [f"fc{i}" for i in range(1, n_layers + 1)]
        if self.layer not in allowed_layers:
            _fail("layer", self.layer, "one of " + ", ".join(allowed_layers) + " for these widths")
        if self.dropout > 0 and len(self.widths) < 1:
            _fail("dropout", self.dropout, "0 for a network without hidden layers")
        if self.algorithm == "sgd" and self.n_learners != 1:
            _fail("algorithm", self.algorithm, "'ssgd', 'dpsgd' or 'local_sgd' when n_learners > 1")
        if self.n_learners > self.n_train:
            _fail(
                "n_learners",
                self.n_learners,
                f"at most n_train={self.n_train} (every learner needs its own data shard)",
            )
        if self.algorithm == "dpsgd" and self.topology == "torus":
            side = math.isqrt(self.n_learners)
            if side * side != self.n_learners:
                _fail(
                    "topology",
                    self.topology,
                    f"'ring', 'full' or 'gossip' for n_learners={self.n_learners}: a torus needs "
                    "a square number of learners (1, 4, 9, 16, ...)",
                )
        if self.loss != "ce" and (self.n_learners != 1 or self.algorithm != "sgd"):
            _fail(
                "loss",
                self.loss,
                "'ce' for multi-learner training (n_learners > 1 or algorithm != 'sgd'): "
                "only single-learner SGD trains with 'mse'",
            )

    # --- construction -------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str) -> Config:
        if name not in PRESETS:
            raise ConfigError(f"preset={name!r} is not known: expected one of {', '.join(PRESETS)}")
        return cls(**PRESETS[name])

    def replace(self, **changes: Any) -> Config:
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ConfigError(
                f"unknown Config field(s) {', '.join(unknown)}: expected any of "
                + ", ".join(f.name for f in fields(self))
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(
                f"unknown Config field(s) {', '.join(unknown)}: expected any of {', '.join(sorted(known))}"
            )
        return cls(**d)

    def key(self) -> str:
        """Stable hash of the canonical JSON of every field plus the schema version.

        A file-backed dataset (mnist, fashion_mnist) is keyed on its files' contents, not on
        ``data_dir``: the path is replaced by :func:`data_fingerprint`, so that the same files
        in another folder, on another machine or Dask worker give the same key and replaced
        files another one. Without readable files the key marks the path as unreadable: no run
        can train then, so nothing is ever stored under it (and a plan refuses it). The
        built-in datasets' keys hold every field as is, except a field of
        ``KEY_OPTIONAL_DEFAULTS`` at its default (added later: so old keys stay valid)."""
        d = self.to_dict()
        for name, default in KEY_OPTIONAL_DEFAULTS.items():
            if d[name] == default:
                del d[name]
        if self.dataset in FILE_DATASETS:
            try:
                d["data_dir"] = data_fingerprint(self.dataset, self.data_dir)
            except DataError:
                d["data_dir"] = "unreadable:" + self.data_dir
        payload = json.dumps({"schema": SCHEMA_VERSION, **d}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def diff(self, other: Config | None = None) -> dict[str, Any]:
        """Fields that differ from ``other`` (default: the dataclass defaults)."""
        base = (other or Config()).to_dict()
        return {k: v for k, v in self.to_dict().items() if base[k] != v}

    def epoch_budget(self) -> int:
        """Epochs this run may train: ``max_epochs``, or when None the automatic budget of
        ``BUDGET_MARGIN`` x the demo's 1000 x 4000 samples seen, counted on the clean
        ``n_train`` (so label noise does not shrink it), capped at ``AUTO_EPOCH_CAP``."""
        if self.max_epochs is not None:
            return self.max_epochs
        samples = BUDGET_MARGIN * DEMO_MAX_EPOCHS * DEMO_EPOCH_SAMPLES
        return min(AUTO_EPOCH_CAP, -(-samples // self.n_train))

    def decay_epochs(self) -> int:
        """Epochs with weight decay on: ``weight_decay_epochs``, or when None the demo's
        200 x 4000 samples seen on the clean ``n_train`` (never past the budget)."""
        if self.weight_decay_epochs is not None:
            return self.weight_decay_epochs
        samples = DEMO_DECAY_EPOCHS * DEMO_EPOCH_SAMPLES
        return min(self.epoch_budget(), -(-samples // self.n_train))

    def resolved_device(self) -> str:
        """The torch device of this run; ConfigError for device='cuda' without CUDA, so that
        a run fails before it trains, not at its first tensor on the GPU."""
        if self.device == "cpu":
            return "cpu"
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if not torch.cuda.is_available():
            why = (
                "this torch is built without CUDA"
                if torch.version.cuda is None
                else "torch finds no CUDA device here"
            )
            _fail("device", self.device, f"'cpu' or 'auto' ({why})")
        return self.device


FIELD_NAMES = tuple(f.name for f in fields(Config))

PRESETS: dict[str, dict[str, Any]] = {
    # docs/science.md#4-the-demo-protocol-and-awbenchs-presets on the bundled digits (1297 train / 500 test, 64 -> 30 -> 30 -> 10).
    "paper": {},
    # The authors' exact demo protocol on user-supplied MNIST IDX files.
    "paper-mnist": {"dataset": "mnist", "n_train": 4000, "n_test": 1000},
    # MNIST-1D: 40 inputs; 30-wide layers plateau near loss 0.45, so the net is wider.
    "mnist1d": {"dataset": "mnist1d", "n_train": 4000, "n_test": 1000, "widths": (64, 64)},
    # Seconds-fast, for tests and notebook smoke runs. Its stopping rule is looser than the
    # paper's (train loss < 0.1, accuracy > 0.95 over 3 epochs) so that most smoke runs can
    # meet it within 100 epochs and the converged-only paths run in the tests; a smoke number
    # is a check of the machinery, never a result.
    "smoke": {
        "n_train": 400,
        "n_test": 200,
        "widths": (20, 20),
        "max_epochs": 100,
        "weight_decay_epochs": 20,
        "stop_loss": 0.1,
        "stop_acc": 0.95,
        "stop_window": 3,
    },
}
