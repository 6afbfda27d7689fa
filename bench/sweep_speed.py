"""How fast does a converged paper sweep run? The batch-size sweep (4 values x 10 seeds) on the
paper preset, every run trained to the stopping rule under the automatic budget, nothing
cached, run twice in this process: every run trained alone, then the seeds of each setting
trained together as one stacked model (what `run_sweep` does by default).

    python bench/sweep_speed.py                 # the full sweep with 2 workers, a few minutes
    python bench/sweep_speed.py --seeds 3       # a quick look
    python bench/sweep_speed.py --workers 1 --preset lr

Prints wall time and total CPU time (the sum over runs of the CPU their worker spent; a
stacked group charges each run an equal share) of both modes and their ratios, against the
targets: the stacked sweep within 3 minutes with 2 workers, and at least 1.5x less CPU time
than training the runs one by one. The authors' demo needs about 30 minutes on a CPU for its
MNIST version of this sweep (fewer steps: its budget is half of ours).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from awbench.config import PRESETS
from awbench.experiments.grids import SWEEP_PRESETS
from awbench.experiments.planning import plan_sweep
from awbench.experiments.sweep import run_sweep

DEMO_MINUTES = 30.0  # the authors' README, MNIST batch-size sweep on a CPU
TARGET_MINUTES = 3.0  # the stacked paper batch-size sweep with 2 workers
TARGET_CPU_RATIO = 1.5  # one-by-one CPU time / stacked CPU time


def run(sweep, workers: int, stack_seeds: bool):
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="awbench-bench-") as tmp:
        start = time.perf_counter()
        report = run_sweep(
            sweep,
            os.path.join(tmp, "store"),
            workers=workers,
            cache=False,
            quiet=True,
            stack_seeds=stack_seeds,
        )
        seconds = time.perf_counter() - start  # includes starting the workers
        runs, _ = report.load()
    statuses = runs["status"].value_counts().to_dict()
    cpu = float(runs["cpu_seconds"].sum())
    mode = "stacked" if stack_seeds else "one by one"
    print(
        f"{mode:>10}: {report.ran} runs in {seconds:.1f}s wall, {cpu:.1f}s CPU; "
        f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}; "
        + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
    )
    return seconds, cpu, statuses, runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=10, help="seeds per value (default 10)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--preset", default="batch_size", choices=SWEEP_PRESETS)
    parser.add_argument("--base", default="paper", choices=list(PRESETS))
    args = parser.parse_args(argv)
    sweep = plan_sweep(args.preset, seeds=args.seeds, base=args.base)
    print(
        f"sweep {args.preset} on {args.base}: {len(sweep)} runs ({', '.join(sweep.varying)}), "
        f"{args.workers} worker(s), no cache, every run to the stopping rule (auto budget)"
    )
    single_s, single_cpu, single_status, single_runs = run(sweep, args.workers, False)
    stacked_s, stacked_cpu, stacked_status, stacked_runs = run(sweep, args.workers, True)
    same = single_runs.set_index("key")["epochs"].equals(
        stacked_runs.set_index("key")["epochs"].reindex(single_runs["key"])
    )
    print(f"same epochs per run in both modes: {same}; statuses {stacked_status}")
    if single_status != stacked_status:
        print(f"  warning: statuses differ: {single_status} vs {stacked_status}")
    ratio = single_cpu / stacked_cpu
    minutes = stacked_s / 60.0
    print(
        f"CPU time one by one / stacked: {ratio:.2f}x (target >= {TARGET_CPU_RATIO}x: "
        f"{'met' if ratio >= TARGET_CPU_RATIO else 'NOT met'}); wall {single_s / stacked_s:.2f}x"
    )
    print(
        f"stacked sweep: {minutes:.1f} min with {args.workers} worker(s); target <= "
        f"{TARGET_MINUTES:.0f} min with 2 workers: "
        f"{'met' if minutes <= TARGET_MINUTES else 'NOT met'}; authors' demo ~{DEMO_MINUTES:.0f} min "
        f"(ratio {DEMO_MINUTES / minutes:.1f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
