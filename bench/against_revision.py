"""Training and analysis speed of this tree against a git revision, in one process.

Timings on a shared machine swing by 2x between runs, so comparing two bench runs of two
checkouts says little. Here the revision's package is exported (``git archive``) under another
name, both packages are imported into this process, and their runs are interleaved round by
round; each case keeps the minimum over rounds. Cases (digits "paper" preset, 4 epochs, one
thread): single ``train`` at batch 25 and 400, ``train_stacked`` of 10 seeds at batch 25,
DPSGD and SSGD with 8 learners, and ``analyze`` of a trained run.

Run: .venv/bin/python bench/against_revision.py [REV] [--rounds N]   (REV defaults to HEAD)
Target: every ratio this/REV <= 1.10 for a change that should not cost speed.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

os.environ.setdefault("AWBENCH_QUIET", "1")

import torch

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "train b25": {"batch_size": 25},
    "train b400": {"batch_size": 400},
    "stacked x10 b25": {"batch_size": 25},
    "dpsgd n8 b25": {"batch_size": 25, "n_learners": 8, "algorithm": "dpsgd"},
    "ssgd n8 b25": {"batch_size": 25, "n_learners": 8, "algorithm": "ssgd"},
}


def export(rev: str, name: str, into: Path) -> None:
    """The package at ``rev`` as package ``name`` under ``into`` (imports renamed)."""
    tar = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "awbench"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(into, filter="data")
    (into / "awbench").rename(into / name)
    for path in (into / name).rglob("*.py"):
        text = re.sub(r"\bawbench\b(?=[. ])", name, path.read_text())
        path.write_text(text)


def copy_tree(name: str, into: Path) -> None:
    """This working tree's package as ``name`` (what is being measured)."""
    for path in (ROOT / "awbench").rglob("*"):
        target = into / name / path.relative_to(ROOT / "awbench")
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.suffix == ".py":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(re.sub(r"\bawbench\b(?=[. ])", name, path.read_text()))


def setups(aw) -> dict:
    base = aw.Config.preset("paper").replace(max_epochs=4, stop_loss=1e-12)
    data = aw.load_data(base)
    stacked = importlib.import_module(f"{aw.__name__}.training.stacked").train_stacked
    out = {}
    for case, changes in CASES.items():
        cfg = base.replace(**changes)
        if case.startswith("stacked"):
            cfgs = [cfg.replace(seed=s) for s in range(10)]
            out[case] = lambda cfgs=cfgs: stacked(cfgs, data)
        else:
            out[case] = lambda cfg=cfg: aw.train(cfg, data=data)
    run = aw.train(aw.Config.preset("paper"))
    out["analyze"] = lambda: aw.analyze(run)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", nargs="?", default="HEAD")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        export(args.rev, "aw_rev", Path(tmp))
        copy_tree("aw_this", Path(tmp))
        sys.path.insert(0, tmp)
        packages = {name: importlib.import_module(name) for name in ("aw_rev", "aw_this")}
        work = {name: setups(aw) for name, aw in packages.items()}
        for jobs in work.values():  # warm-up: first-call allocations, lazy imports
            for job in jobs.values():
                job()
        best: dict[tuple[str, str], float] = {}
        for _ in range(args.rounds):
            for case in work["aw_this"]:
                for name, jobs in work.items():
                    start = time.perf_counter()
                    jobs[case]()
                    seconds = time.perf_counter() - start
                    best[case, name] = min(best.get((case, name), float("inf")), seconds)
    print(
        f"torch {torch.__version__}, one thread; this tree against {args.rev}, min of {args.rounds}"
    )
    worst = 0.0
    for case in work["aw_this"]:
        ratio = best[case, "aw_this"] / best[case, "aw_rev"]
        worst = max(worst, ratio)
        print(
            f"  {case:16s} {args.rev}: {1e3 * best[case, 'aw_rev']:7.1f} ms   "
            f"this: {1e3 * best[case, 'aw_this']:7.1f} ms   this/{args.rev} {ratio:.2f}"
        )
    verdict = "meets" if worst <= 1.10 else "MISSES"
    print(f"worst ratio {worst:.2f} ({verdict} the <= 1.10 target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
