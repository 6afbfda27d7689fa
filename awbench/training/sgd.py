"""``train``: one Config trained with the paper's protocol.

Single-learner SGD is a stack of one member in :mod:`awbench.training.stacked`, so a single
run and the seeds of a sweep take the same steps through the same engine; several learners go
to :mod:`awbench.training.multilearner`.
"""

from __future__ import annotations

from awbench.config import Config
from awbench.data import Data
from awbench.training.multilearner import train_multilearner
from awbench.training.run import EpochCallback, Run
from awbench.training.stacked import train_stacked

__all__ = ["train"]


def train(
    cfg: Config,
    data: Data | None = None,
    show_progress: bool | None = None,
    on_epoch: EpochCallback | None = None,
) -> Run:
    """Train ``cfg``'s MLP with the paper's protocol and return a :class:`Run`.

    A non-finite loss ends the run with status "diverged" and its reason instead of raising,
    so that a sweep records it and goes on. ``on_epoch``: see :data:`EpochCallback`; it sees
    every row of the returned history, the diverged epoch's included.
    """
    if cfg.n_learners > 1 or cfg.algorithm != "sgd":
        return train_multilearner(cfg, data=data, show_progress=show_progress, on_epoch=on_epoch)
    return train_stacked([cfg], data, show_progress=show_progress, on_epoch=on_epoch)[0]
