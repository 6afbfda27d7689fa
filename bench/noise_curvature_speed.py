"""Speed and peak memory of noise_curvature on a large layer (issue 25, item 4), two threads.

Case ``mlp200``: the 200 x 200 fc2 of a bias-free MLP 40 -> 200 -> 200 -> 10 (40,000
weights) over 4000 training samples (MNIST-1D, float64), batch size 25, top-200 directions
of H by Lanczos over the structured products H v; the diagonals of C and E[h^2] in them
from the per-sample factors (nothing P x P is formed). Target <= 60 s and <= 2 GB on 2
cores. The network is trained for a few epochs first so that its curvature is that of a
learning net, not of its initialisation (the training is not timed).

It also prints the CPU seconds the call took (user + system, both threads) and the load
average: on a shared machine the wall time of two threads is at best half the CPU seconds.

Peak memory is the process's peak RSS during the call minus its RSS just before it (the
case runs in a fresh process, so the peak is its own).

Measured on the idle 2-core machine (2026-12-07, load 2.3 = this bench's two threads):
33.9 s, 65.8 CPU-s, peak RSS +0.36 GB, loss ce (gamma 0.964 [0.951, 0.977], predicted
1.060; commutator 0.068 against 0.086 for the random baseline). An earlier 80 s was taken
while four other jobs ran (load ~7): the CPU seconds are the figure to compare there.

Run: .venv/bin/python bench/noise_curvature_speed.py [--loss ce|mse]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

TARGET_SECONDS, TARGET_GB = 60.0, 2.0


def _rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def case(loss: str) -> dict:
    import awbench as aw

    torch.set_num_threads(2)
    cfg = aw.Config.preset("mnist1d").replace(
        widths=(200, 200), max_epochs=5, batch_size=25, loss=loss, seed=0
    )
    run = aw.train(cfg, show_progress=False)
    x, y = run.data.x_train[:4000], run.data.y_train[:4000]
    model = run.model
    base = _rss_bytes()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    nc = aw.noise_curvature(model, "fc2", train=(x, y), batch_size=25, loss=loss, k=200)
    seconds = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime
    return {
        "loss": loss,
        "n_weights": nc.n_weights,
        "n_samples": nc.n_samples,
        "directions": len(nc.lam),
        "route": nc.route,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_gb": (_peak_bytes() - base) / 2**30,
        "gamma": nc.gamma.exponent,
        "gamma_interval": list(nc.gamma.interval),
        "gamma_predicted": nc.gamma_predicted.exponent,
        "commutator": nc.commutator,
        "commutator_baseline": nc.commutator_baseline,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loss", default="ce", choices=("ce", "mse"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(case(args.loss)))
        return
    env = dict(os.environ, AWBENCH_QUIET="1")
    out = subprocess.run(
        [sys.executable, __file__, "--child", "--loss", args.loss],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    ok = r["seconds"] <= TARGET_SECONDS and r["peak_gb"] <= TARGET_GB
    print(
        f"noise_curvature {r['n_weights']} weights x {r['n_samples']} samples, "
        f"top-{r['directions']} ({r['route']}, loss {r['loss']}, 2 threads): "
        f"{r['seconds']:.1f} s ({r['cpu_seconds']:.1f} CPU-s), load {os.getloadavg()[0]:.1f}, peak RSS +{r['peak_gb']:.2f} GB "
        f"(target <= {TARGET_SECONDS:.0f} s, <= {TARGET_GB:.0f} GB: {'met' if ok else 'MISSED'})"
    )
    print(
        f"  gamma {r['gamma']:.3f} [{r['gamma_interval'][0]:.3f}, {r['gamma_interval'][1]:.3f}], "
        f"predicted {r['gamma_predicted']:.3f}, "
        f"commutator {r['commutator']:.3g} vs random {r['commutator_baseline']:.3g}"
    )


if __name__ == "__main__":
    main()
