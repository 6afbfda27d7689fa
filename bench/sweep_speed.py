"""How fast does a paper sweep run? The batch-size sweep (4 values x 10 seeds) on the paper
preset, with 1 and with 2 worker processes, nothing cached.

    python bench/sweep_speed.py                 # the full sweep, a few minutes per worker count
    python bench/sweep_speed.py --seeds 2       # a quick look
    python bench/sweep_speed.py --workers 1,2,4 --preset lr

Prints runs per minute for each worker count, the parallel efficiency
(rate with N workers / (N x rate with 1)), and the wall time of the largest worker count
against the issue's target (<= 3 minutes with 2 workers; the authors' demo needs about
30 minutes on a CPU for its MNIST version of this sweep).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from awbench.config import PRESETS
from awbench.sweep import SWEEP_PRESETS, default_workers, plan_sweep, run_sweep

DEMO_MINUTES = 30.0  # the authors' README, MNIST batch-size sweep on a CPU
TARGET_MINUTES = 3.0  # issue 5: the paper batch-size sweep with 2 workers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=10, help="seeds per batch size (default 10)")
    parser.add_argument(
        "--workers", default="1,2", help="comma-separated worker counts (default 1,2)"
    )
    parser.add_argument("--preset", default="batch_size", choices=SWEEP_PRESETS)
    parser.add_argument("--base", default="paper", choices=list(PRESETS))
    args = parser.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    sweep = plan_sweep(args.preset, seeds=args.seeds, base=args.base)
    print(
        f"sweep {args.preset} on {args.base}: {len(sweep)} runs ({', '.join(sweep.varying)}), "
        f"cores available: {default_workers()}, no cache"
    )
    rates: dict[int, float] = {}
    seconds: dict[int, float] = {}
    statuses = None
    for w in counts:
        load_before = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix="awbench-bench-") as tmp:
            start = time.perf_counter()
            report = run_sweep(
                sweep, os.path.join(tmp, "store"), workers=w, cache=False, quiet=True
            )
            seconds[w] = time.perf_counter() - start  # includes starting the workers
            rates[w] = 60.0 * report.ran / seconds[w]
            runs, _ = report.load()
        by_status = runs["status"].value_counts().to_dict()
        if statuses is not None and by_status != statuses:
            print(f"  warning: statuses differ between worker counts: {statuses} vs {by_status}")
        statuses = by_status
        cpu, wall = runs["cpu_seconds"].sum(), runs["wall_seconds"].sum()
        print(
            f"workers={w}: {report.ran} runs in {seconds[w]:.1f}s = {rates[w]:.1f} runs/min; "
            f"per run {wall / len(runs):.2f}s wall, {cpu / len(runs):.2f}s CPU "
            f"(CPU/wall {cpu / wall:.2f}); load average {load_before:.1f} -> "
            f"{os.getloadavg()[0]:.1f}; {', '.join(f'{k} {v}' for k, v in sorted(by_status.items()))}"
        )
        if cpu / wall < 0.8:
            print(
                "  note: the runs got the CPU only part of the time: other processes compete "
                f"for the cores, so this rate understates the machine; with {w} free core(s) "
                f"the sweep needs about {cpu / w / 60:.1f} min (CPU seconds / workers)"
            )
    if 1 in rates:
        for w in counts:
            if w > 1:
                print(
                    f"parallel efficiency with {w} workers: {rates[w] / (w * rates[1]):.2f} "
                    f"(speed-up {rates[w] / rates[1]:.2f}x)"
                )
    top = max(counts)
    minutes = seconds[top] / 60.0
    scale = 40 / len(sweep)  # project a shrunken sweep to the full 4 x 10
    note = "" if len(sweep) == 40 else f" (projected to 40 runs: {minutes * scale:.1f} min)"
    verdict = "within" if minutes * scale <= TARGET_MINUTES else "OVER"
    print(
        f"{args.preset} sweep with {top} workers: {minutes:.1f} min{note}; target <= {TARGET_MINUTES:.0f} min "
        f"with 2 workers: {verdict}; authors' demo ~{DEMO_MINUTES:.0f} min "
        f"(ratio {DEMO_MINUTES / (minutes * scale):.1f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
