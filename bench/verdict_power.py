"""Power and false-verdict rate of the verdict rule, by simulation through its public API.

Sweeps with known effects are drawn on the log scale: value = seed offset + effect at the
knob value + noise, the noise's SD (the within-seed SD) being the unit. Each simulated sweep
goes through ``awbench.experiments.verdicts.verdict_table`` with the family of the design's
profile, and claims through ``awbench.experiments.claims.claim_verdicts`` (Holm over the
claims), exactly as the notebooks and the report call them.

Targets (issue 21), at the quick profile's design (3 values x 10 seeds, family 42):
  - a saturating effect of 3 SD, all in the first step: a directional verdict >= 80 %;
  - a linear effect with ends 4 SD apart: >= 80 %;
  - no effect anywhere: any false up / down / non-monotone in a whole table <= 5 %.

Run: .venv/bin/python bench/verdict_power.py [--reps N] [--tables N] [--workers N]
(about 3 minutes on 2 cores with the defaults). Prints one markdown table, the one
docs/science.md#7-claims-and-hypotheses shows.
"""

from __future__ import annotations

import argparse
import math
import os
from concurrent.futures import ProcessPoolExecutor

os.environ.setdefault("AWBENCH_QUIET", "1")

import numpy as np
import pandas as pd

from awbench.experiments import claims as cl
from awbench.experiments import verdicts as vd
from awbench.experiments.grids import PROFILES, verdict_family

DESIGNS = {
    # name: (knob values, seeds, family)
    "quick (3 values x 10 seeds)": (3, PROFILES["quick"].seeds, verdict_family("quick")),
    "old quick (3 values x 5 seeds)": (3, 5, verdict_family("quick")),
    "paper (4 values x 10 seeds)": (4, PROFILES["paper"].seeds, verdict_family("paper")),
}


def effect_means(shape: str, k: int) -> np.ndarray:
    if shape == "saturating 3 SD":
        return np.r_[0.0, np.full(k - 1, 3.0)]
    if shape == "linear, ends 4 SD":
        return np.linspace(0.0, 4.0, k)
    return np.zeros(k)


def draw(means: np.ndarray, seeds: int, rng: np.random.Generator, quantity: str) -> pd.DataFrame:
    k = means.size
    offsets = rng.normal(0, 1, (seeds, 1))
    values = np.exp(offsets + means[None, :] + rng.normal(0, 1, (seeds, k)))
    return pd.DataFrame(
        {
            "knob": np.tile(np.arange(1.0, k + 1), seeds),
            "seed": np.repeat(np.arange(seeds), k),
            "status": "converged",
            quantity: values.ravel(),
        }
    )


def one_cell(args) -> str:
    shape, k, seeds, family, rep = args
    rng = np.random.default_rng([rep, k, seeds, hash(shape) % 2**31])
    runs = draw(effect_means(shape, k), seeds, rng, "sharpness")
    table = vd.verdict_table({"knob": runs}, ("sharpness",), family=family, seed=rep)
    return str(table["verdict"].iloc[0])


def one_claim(args) -> str:
    """A saturating effect on one hypothesis claim's cell; every other claim's evidence null."""
    shape, k, seeds, family, rep = args
    rng = np.random.default_rng([rep, k, seeds, 7])
    knobs = {c.knob for c in cl.CLAIMS if c.knob not in ("algorithm", "across_runs")}
    sweeps = {}
    for knob in sorted(knobs):
        frames = []
        for q in ("sharpness", "size", "real_gap"):
            planted = knob == "batch_size" and q == "sharpness"
            frames.append(draw(effect_means(shape if planted else "none", k), seeds, rng, q))
        runs = frames[0].assign(size=frames[1]["size"], real_gap=frames[2]["real_gap"])
        sweeps[knob] = runs.rename(columns={"knob": knob})
    table = vd.verdict_table(sweeps, ("sharpness", "size", "real_gap"), family=family, seed=rep)
    got = cl.claim_verdicts(table).set_index("id")
    return str(got.loc["hyp.batch_size.sharpness", "verdict"])


def one_null_table(args) -> bool:
    """A whole table of ``family`` cells with no effect: any up / down / non-monotone?"""
    k, seeds, family, rep = args
    rng = np.random.default_rng([rep, k, seeds, 11])
    for cell in range(family):
        runs = draw(np.zeros(k), seeds, rng, "sharpness")
        table = vd.verdict_table({"knob": runs}, ("sharpness",), family=family, seed=cell)
        if table["verdict"].iloc[0] in vd.DIRECTIONAL:
            return True
    return False


def interval(hits: int, n: int) -> str:
    """The rate with a 95 % Wilson interval."""
    p, z = hits / n, 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"{100 * p:.1f} % [{100 * (centre - half):.1f}, {100 * (centre + half):.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=400, help="sweeps per effect and design")
    parser.add_argument("--tables", type=int, default=200, help="null tables per design")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with ProcessPoolExecutor(args.workers) as pool:
        for name, (k, seeds, family) in DESIGNS.items():
            for shape, want in (("saturating 3 SD", "up"), ("linear, ends 4 SD", "up")):
                tasks = [(shape, k, seeds, family, r) for r in range(args.reps)]
                verdicts = list(pool.map(one_cell, tasks, chunksize=20))
                hits = sum(v == want for v in verdicts)
                rows.append(
                    (
                        name,
                        f"{shape}: '{want}' in its cell (family {family})",
                        interval(hits, len(verdicts)),
                        ">= 80 %",
                    )
                )
            tasks = [("saturating 3 SD", k, seeds, family, r) for r in range(args.reps // 4)]
            verdicts = list(pool.map(one_claim, tasks, chunksize=5))
            hits = sum(v == "supported" for v in verdicts)
            rows.append(
                (
                    name,
                    f"saturating 3 SD: hypothesis claim 'supported' (Holm over {len(cl.CLAIMS)} claims)",
                    interval(hits, len(verdicts)),
                    "-",
                )
            )
            tasks = [(k, seeds, family, r) for r in range(args.tables)]
            false = sum(pool.map(one_null_table, tasks, chunksize=5))
            rows.append(
                (
                    name,
                    f"no effect: any false verdict in a table of {family} cells",
                    interval(false, args.tables),
                    "<= 5 %",
                )
            )
    print("| design | case | rate [95 % interval] | target (quick) |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
