"""Top-10 Hessian eigenvalues: awbench's Lanczos against PyHessian's deflated power iteration.

On the whole-network Hessian (every weight, 7296 parameters) of the mnist1d preset's trained
MLP (40 -> 64 -> 64 -> 10, no bias), full batch over the clean training set, float64, eval
mode, this prints:

- the cost of one Hessian-vector product (HVP) relative to one gradient of the same loss
  (target <= 2; best of 15 interleaved repeats, single thread), for
  awbench's default backend (cached forward pass, explicit R-operator) and for the generic
  autograd backend (double backward through a retained gradient graph);
- the reference: the dense Hessian (assembled exactly from Kronecker-factored layer blocks)
  and its eigenvalues by dense eigh (``torch.linalg.eigvalsh``);
- for several seeds, the HVP count, wall time and worst relative error of the top 10 from
  ``top_eigenpairs``' Lanczos (thick-restart, full re-orthogonalisation, tol 1e-12), from
  scipy's ARPACK over the same operator, and from deflated power iteration exactly as
  PyHessian's ``hessian.eigenvalues(maxIter=100, tol=1e-3, top_n=10)`` runs it (random
  start per eigenvalue, re-orthogonalised against the found ones each step, stops when the
  Rayleigh quotient changes by less than 1e-3 relative), using the same operator;
- the ratio of HVP counts (target: Lanczos to 1e-8 with <= 1/3 of power iteration's HVPs).

Training is the preset's full protocol (about 25-40 s, converged at epoch 174). The dense
reference dominates the rest: about N * P^2 = 2e11 multiply-adds for the matrix and a
7296 x 7296 eigvalsh (about 35 s single-threaded on an idle core). Total about 2 minutes.

Run: .venv/bin/python bench/spectrum_speed.py
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

os.environ.setdefault("AWBENCH_CACHE", tempfile.mkdtemp(prefix="awbench_bench_"))
os.environ.setdefault("AWBENCH_QUIET", "1")
torch.set_num_threads(1)

import awbench as aw
from awbench.curvature.eigensolvers import operator_eigenpairs
from awbench.curvature.operators import HessianOperator
from awbench.nn.engine import mlp_gradients

K = 10
SEEDS = (0, 1, 2)


def interleaved_best(fns, repeats=15):
    """Best wall time of each function, measured in alternation so that load drifts hit all."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def pyhessian_power_iteration(op, top_n=10, max_iter=100, tol=1e-3, seed=0):
    """PyHessian's ``hessian.eigenvalues`` step for step, on awbench's operator."""
    gen = torch.Generator().manual_seed(seed)
    P = op.shape[0]
    eigenvalues, eigenvectors = [], []
    for _ in range(top_n):
        eigenvalue = None
        v = torch.randn(P, generator=gen, dtype=torch.float64)
        v = v / v.norm()
        for _ in range(max_iter):
            for u in eigenvectors:  # orthnormal(v, eigenvectors)
                v = v - (v @ u) * u
            v = v / v.norm()
            Hv = op.apply(v)
            tmp = float(Hv @ v)
            v = Hv / Hv.norm()
            if eigenvalue is None:
                eigenvalue = tmp
            elif abs(eigenvalue - tmp) / (abs(eigenvalue) + 1e-6) < tol:
                break
            else:
                eigenvalue = tmp
        eigenvalues.append(eigenvalue)
        eigenvectors.append(v)
    return np.array(eigenvalues)


def main():
    t_start = time.perf_counter()
    cfg = aw.Config.preset("mnist1d")
    start = time.perf_counter()
    run = aw.train(cfg)
    print(
        f"trained mnist1d preset: {run.status} after {run.epochs} epochs in {time.perf_counter() - start:.1f} s, "
        f"train loss {run.history.train_loss.iloc[-1]:.2e}"
    )
    x, y = run.data.x_clean, run.data.y_clean
    op = HessianOperator(run.model, x, y)  # all parameters, float64, eval mode, full batch
    P, N = op.shape[0], op.n_samples
    print(f"whole-network Hessian: P = {P} parameters, N = {N} samples, backend {op.backend!r}")

    # -- cost of one HVP / one gradient -----------------------------------------------------
    flat = op.flat
    theta = flat.theta0.clone().requires_grad_(True)
    x64 = x.double()
    model64 = aw.build_model(cfg.replace(dtype="float64"), x.shape[1], run.data.n_classes)
    model64.load_state_dict(run.model.state_dict())
    model64.eval()
    op_autograd = HessianOperator(run.model, x, y, backend="autograd")
    v = torch.randn(P, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(
        op.apply(v), op_autograd.apply(v), rtol=0, atol=1e-12 * float(op.apply(v).abs().max())
    )
    t_grad, t_grad_explicit, t_hvp, t_hvp_autograd = interleaved_best(
        [
            lambda: torch.autograd.grad(F.cross_entropy(flat.logits(theta, x64), y), theta),
            lambda: mlp_gradients(model64, x64, y),
            lambda: op.apply(v),
            lambda: op_autograd.apply(v),
        ]
    )
    print(
        f"one gradient (autograd, functional_call): {1e3 * t_grad:.1f} ms; "
        f"explicit backprop (awbench.nn.engine): {1e3 * t_grad_explicit:.1f} ms"
    )
    print(
        f"one HVP, default backend:  {1e3 * t_hvp:.1f} ms = {t_hvp / t_grad:.2f} x autograd gradient "
        f"({t_hvp / t_grad_explicit:.2f} x explicit)   target <= 2"
    )
    print(
        f"one HVP, autograd backend (retained graph, double backward): {1e3 * t_hvp_autograd:.1f} ms "
        f"= {t_hvp_autograd / t_grad:.2f} x autograd gradient"
    )

    # -- reference: dense Hessian, dense eigh -------------------------------------------------
    start = time.perf_counter()
    H = op.dense()
    t_dense = time.perf_counter() - start
    V = torch.randn(P, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    check = float((H @ V - op_autograd.apply(V)).abs().max() / (H @ V).abs().max())
    start = time.perf_counter()
    evals = torch.linalg.eigvalsh(H).numpy()
    t_eigh = time.perf_counter() - start
    ref = evals[::-1][:K].copy()
    ref_lm = evals[np.argsort(-np.abs(evals))][:K]
    del H
    print(
        f"dense Hessian by layer blocks {t_dense:.1f} s (agrees with autograd HVPs to {check:.1e}); "
        f"dense eigvalsh {t_eigh:.1f} s"
    )
    print("top-10 eigenvalues (dense eigh): " + " ".join(f"{v:.6g}" for v in ref))
    if not np.allclose(np.sort(np.abs(ref_lm)), np.sort(np.abs(ref))):
        print(
            "note: the 10 largest |lambda| differ from the 10 largest lambda; power iteration is scored on |lambda|"
        )

    def rel_err(values, target):
        return float(np.max(np.abs(np.asarray(values) - target) / np.abs(target)))

    # -- the three methods ------------------------------------------------------------------
    rows = []
    for seed in SEEDS:
        for name, fn, target in (
            (
                "awbench lanczos",
                lambda s: operator_eigenpairs(op, K, "LA", method="lanczos", seed=s).values.numpy(),
                ref,
            ),
            (
                "scipy arpack",
                lambda s: operator_eigenpairs(op, K, "LA", method="arpack", seed=s).values.numpy(),
                ref,
            ),
            ("pyhessian power", lambda s: pyhessian_power_iteration(op, K, seed=s), ref_lm),
        ):
            op.n_products = 0
            start = time.perf_counter()
            values = fn(seed)
            wall = time.perf_counter() - start
            order = (
                np.argsort(-np.abs(values)) if name == "pyhessian power" else np.argsort(-values)
            )
            rows.append(
                (name, seed, op.n_products, wall, rel_err(np.asarray(values)[order], target))
            )
    print()
    print(f"{'method':<18}{'seed':>5}{'HVPs':>7}{'wall s':>9}{'max rel err':>13}")
    for name, seed, n, wall, err in rows:
        print(f"{name:<18}{seed:>5}{n:>7}{wall:>9.2f}{err:>13.1e}")
    print("(arpack's count includes the 10 HVPs that recompute its residual norms)")

    def median(name, col):
        return float(np.median([r[col] for r in rows if r[0] == name]))

    n_lz, n_pw = median("awbench lanczos", 2), median("pyhessian power", 2)
    print()
    print(
        f"median HVPs: lanczos {n_lz:.0f} (max rel err {max(r[4] for r in rows if r[0] == 'awbench lanczos'):.1e}), "
        f"power iteration {n_pw:.0f} (max rel err {max(r[4] for r in rows if r[0] == 'pyhessian power'):.1e})"
    )
    print(
        f"lanczos / power iteration HVPs = {n_lz / n_pw:.2f}   target <= 0.33; "
        f"wall {median('awbench lanczos', 3):.2f} s vs {median('pyhessian power', 3):.2f} s"
    )
    print(f"total bench time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
