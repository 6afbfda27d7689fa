"""Loss slices of the knobs grid: the training loss along the top eigenvector of the analysed
layer's Hessian, computed for one run (:func:`loss_slice`) and kept per run as
``slices/<key>.parquet`` in a store (:func:`~awbench.apps.knobs.grid.add_slices` fills a
whole store), or packed with the store's other parts (``slices/_packed.parquet``,
:func:`pack_slices`) in the shipped grid."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from awbench.experiments.store import atomic_write_table, pack_parts, read_parts

SLICE_POINTS = 41


def slice_path(store: Path, key: str) -> Path:
    return store / "slices" / f"{key}.parquet"


def read_slices(store: Path, keys: Iterable[str]) -> dict[str, pd.DataFrame]:
    """The slices of ``keys`` that ``store`` holds (a damaged part is skipped with a warning:
    its runs are shown without a slice)."""
    table = read_parts(store / "slices", list(keys))
    if table is None:
        return {}
    frame = table.to_pandas()
    return {str(key): part.reset_index(drop=True) for key, part in frame.groupby("key", sort=False)}


def slice_keys(store: Path) -> set[str]:
    """The runs of ``store`` that have a slice."""
    table = read_parts(store / "slices")
    return set() if table is None else set(table.column("key").to_pylist())


def pack_slices(store: Path) -> int:
    """Pack ``store``'s slices into one part (as :meth:`Store.pack
    <awbench.experiments.store.Store.pack>` does runs and directions; numbers kept float64);
    returns the bytes saved."""
    return pack_parts(store / "slices")


def loss_slice(run, t: np.ndarray, layer: str | None = None) -> pd.DataFrame:
    """Mean clean-training cross-entropy along the top eigenvector v of ``layer``'s Hessian.

    ``W + t v`` for each t (v unit norm, its largest component positive), evaluated by
    :func:`awbench.landscape.slice_1d` (functional, float64, eval mode: the model is never
    displaced), next to the quadratic model ``L(0) + 1/2 lam t^2``. The Hessian is the
    analysis's own (dense, :func:`awbench.layer_hessian`), so ``lam`` is the run's
    ``lam_max``. Columns: t, loss, quadratic, lam.
    """
    import torch

    from awbench.curvature.layer import layer_hessian, symmetric_eigh
    from awbench.landscape import slice_1d

    layer = layer or run.config.layer
    model = copy.deepcopy(run.model).double().eval()
    clean = run.data.clean
    x, y = run.data.x_train[clean].double(), run.data.y_train[clean]
    lam, vecs = symmetric_eigh(layer_hessian(model, layer, x, y))
    v = vecs[:, -1]
    v = v * torch.sign(v[v.abs().argmax()])
    lam_max = float(lam[-1])
    ts = np.asarray(t, dtype=float)
    s = slice_1d(model, x, y, v, ts, params=f"{layer}.weight", curvature=lam_max, mode="eval")
    return pd.DataFrame(
        {
            "t": ts,
            "loss": np.asarray(s.loss, dtype=float),
            "quadratic": np.asarray(s.quadratic, dtype=float),
            "lam": lam_max,
        }
    )


def write_slice(store: Path, key: str, frame: pd.DataFrame) -> None:
    import pyarrow as pa

    path = slice_path(store, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_table(pa.Table.from_pandas(frame.assign(key=key), preserve_index=False), path)
