"""Training speed of awbench.train against a loop in the style of typical research code.

For the "paper" preset (digits, 64 -> 30 -> 30 -> 10 ReLU without bias, SGD lr 0.1, batch 25)
this prints the time to the stopping rule and the cost per SGD step of ``awbench.train``, and
the cost per step of a reference loop: DataLoader over a TensorDataset with shuffle, the same
MLP from ``awbench.build_model``, torch.optim.SGD, nn.CrossEntropyLoss and loss.backward().
Both sides evaluate clean-train and test loss/accuracy once per epoch, as the demo does, and
run the same number of epochs (so the same number of steps). One process, one thread.

Run: .venv/bin/python bench/train_speed.py   (about a minute; target ratio >= 3x per step)
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time

os.environ.setdefault("AWBENCH_QUIET", "1")

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import awbench
from awbench.training.run import evaluate

TARGET = 3.0
EPOCHS = 20  # fixed-length timings (both sides); time-to-stop is measured for awbench only
REPEATS = 3


def reference_train(cfg: awbench.Config, data: awbench.Data, epochs: int) -> tuple[float, float]:
    """Research-code style: DataLoader + optimizer + autograd. Returns (seconds, last loss)."""
    torch.manual_seed(cfg.seed)  # the DataLoader's shuffling draws from the global RNG
    model = awbench.build_model(cfg, data.n_features, data.n_classes)
    loader = DataLoader(
        TensorDataset(data.x_train, data.y_train), batch_size=cfg.batch_size, shuffle=True
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    criterion = nn.CrossEntropyLoss()
    x_clean, y_clean = data.x_clean, data.y_clean
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
        train_loss, _ = evaluate(model, x_clean, y_clean)
        evaluate(model, data.x_test, data.y_test)
    return time.perf_counter() - start, train_loss


def main() -> int:
    torch.set_num_threads(1)
    cfg = awbench.Config.preset("paper")
    data = awbench.load_data(cfg)
    n = len(data.y_train)
    steps_per_epoch = math.ceil(n / cfg.batch_size)

    # warm up both paths (first-call allocations, lazy imports)
    awbench.train(cfg.replace(max_epochs=2), data=data)
    reference_train(cfg, data, 2)

    # 1. awbench to the stopping rule
    run = awbench.train(cfg, data=data)
    stop_steps = run.epochs * steps_per_epoch
    stop_per_step = run.train_seconds / stop_steps

    # 2. a fixed number of epochs on both sides (a stop_loss no run reaches)
    fixed = cfg.replace(max_epochs=EPOCHS, stop_loss=1e-300)
    aw_times, ref_times = [], []
    for _ in range(REPEATS):
        r = awbench.train(fixed, data=data)
        assert r.epochs == EPOCHS, r.reason
        aw_times.append(r.train_seconds)
        seconds, ref_loss = reference_train(fixed, data, EPOCHS)
        ref_times.append(seconds)
    steps = EPOCHS * steps_per_epoch
    aw_step = statistics.median(aw_times) / steps
    ref_step = statistics.median(ref_times) / steps
    ratio = ref_step / aw_step

    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, python {sys.version.split()[0]}"
    )
    print(
        f"preset 'paper': {cfg.dataset} n_train={n}, widths={cfg.widths}, batch {cfg.batch_size}, "
        f"{steps_per_epoch} steps/epoch (per-epoch clean-train + test evaluation included)"
    )
    print(
        f"awbench.train to the stopping rule: {run.status} after {run.epochs} epochs "
        f"({stop_steps} steps) in {run.train_seconds:.2f} s = {1e6 * stop_per_step:.0f} us/step; "
        f"final train loss {run.history['train_loss'].iloc[-1]:.2e}, "
        f"test acc {run.history['test_acc'].iloc[-1]:.3f}"
    )
    print(f"{EPOCHS} epochs ({steps} steps), median of {REPEATS}:")
    print(
        f"  awbench.train                  {1e6 * aw_step:7.0f} us/step  "
        f"(train loss {r.history['train_loss'].iloc[-1]:.3f})"
    )
    print(
        f"  DataLoader + optim.SGD + autograd {1e6 * ref_step:4.0f} us/step  (train loss {ref_loss:.3f})"
    )
    print(
        f"  reference, projected to {run.epochs} epochs: {ref_step * stop_steps:.2f} s "
        f"(awbench {run.train_seconds:.2f} s)"
    )
    verdict = "meets" if ratio >= TARGET else "BELOW"
    print(f"speed-up per step: {ratio:.2f}x ({verdict} the {TARGET:.0f}x target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
