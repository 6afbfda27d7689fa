"""Per seed-step cost of ``train_stacked`` (S seeds as one stacked model) against S single runs.

For each batch size in (25, 100, 400) on the "paper" preset (digits, 64 -> 30 -> 30 -> 10 ReLU,
no bias, float32, lr 0.1) this times a fixed number of epochs (a stop_loss no run reaches, an
explicit max_epochs) of S seeds trained one after another with ``awbench.train`` (a stack of one) and of the
same S seeds trained together with ``awbench.training.stacked.train_stacked``. Both sides evaluate the
clean-train and test sets every epoch (test_every=1), run in this process single-threaded,
and the best of a few repeats is kept. It also checks that the two give the same final
parameters.

Run: .venv/bin/python bench/stacked_speed.py [--seeds 10] [--epochs 20] [--repeats 3]
Target: >= 4x cheaper per seed-step at batch 25.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

os.environ.setdefault("AWBENCH_QUIET", "1")

import torch

import awbench
from awbench.training.stacked import train_stacked

TARGET = 4.0
BATCHES = (25, 100, 400)


def time_single(cfgs, data) -> tuple[float, list]:
    start = time.perf_counter()
    runs = [awbench.train(c, data=data) for c in cfgs]
    return time.perf_counter() - start, runs


def time_stacked(cfgs, data) -> tuple[float, list]:
    start = time.perf_counter()
    runs = train_stacked(cfgs, data=data)
    return time.perf_counter() - start, runs


def max_param_diff(a, b) -> float:
    return max(
        float((p.detach() - q.detach()).abs().max())
        for ra, rb in zip(a, b)
        for p, q in zip(ra.model.parameters(), rb.model.parameters())
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = awbench.Config.preset("paper").replace(max_epochs=args.epochs, stop_loss=1e-300)
    data = awbench.load_data(base)
    n = len(data.y_train)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"python {sys.version.split()[0]}"
    )
    print(
        f"preset 'paper': n_train={n}, widths={base.widths}, {base.dtype}; {args.seeds} seeds x "
        f"{args.epochs} epochs, per-epoch clean-train + test evaluation, best of {args.repeats}"
    )
    print(
        f"{'batch':>5} {'steps':>6} {'single us/seed-step':>20} {'stacked us/seed-step':>21} "
        f"{'ratio':>6} {'max |dparam|':>13}"
    )
    ratios = {}
    for batch in BATCHES:
        cfgs = [base.replace(batch_size=batch, seed=s) for s in range(args.seeds)]
        # warm-up: first-call allocations and lazy imports on both paths
        warm = [c.replace(max_epochs=1) for c in cfgs[:2]]
        time_single(warm, data)
        time_stacked(warm, data)
        single, stacked = math.inf, math.inf
        for _ in range(args.repeats):
            t, single_runs = time_single(cfgs, data)
            single = min(single, t)
            t, stacked_runs = time_stacked(cfgs, data)
            stacked = min(stacked, t)
        assert all(r.epochs == args.epochs for r in single_runs + stacked_runs)
        seed_steps = args.seeds * args.epochs * math.ceil(n / batch)
        ratio = single / stacked
        ratios[batch] = ratio
        print(
            f"{batch:>5} {seed_steps // args.seeds:>6} {1e6 * single / seed_steps:>20.1f} "
            f"{1e6 * stacked / seed_steps:>21.1f} {ratio:>5.2f}x "
            f"{max_param_diff(single_runs, stacked_runs):>13.2e}"
        )
    verdict = "meets" if ratios[25] >= TARGET else "BELOW"
    print(f"batch 25: {ratios[25]:.2f}x cheaper per seed-step ({verdict} the {TARGET:.0f}x target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
