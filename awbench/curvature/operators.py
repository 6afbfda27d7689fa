"""Whole-network Hessian and Gauss-Newton matrices as scipy LinearOperators.

Torch products over any parameter subset, the exact full-batch mean whatever the chunking,
an explicit train/eval mode and a determinism check. For awbench's MLP the products use the
explicit R-operator of :mod:`awbench.curvature.mlp_backend` over a cached forward pass and the
dense matrices exact Kronecker-factored layer blocks; any other module goes through autograd
(double backward over a gradient graph built once).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as sla
import torch

from awbench.curvature.flat import (
    FlatModel,
    check_determinism,
    chunk_slices,
    model_mode,
    per_sample_loss,
)
from awbench.curvature.mlp_backend import MLPCurvature, mlp_backend_reason


class CurvatureOperator(sla.LinearOperator):
    """Base of the Hessian and Gauss-Newton operators: a symmetric P x P LinearOperator.

    ``matvec``/``matmat`` accept numpy arrays (scipy's interface, as used by eigsh) or torch
    tensors (returned as float64 torch tensors on the model's device). ``n_products`` counts
    matrix-vector products (a matmat with m columns counts m).
    """

    def __init__(
        self,
        model,
        x,
        y,
        params=None,
        *,
        loss="cross_entropy",
        mode="eval",
        dtype=torch.float64,
        chunk_size=None,
        check="raise",
        backend="auto",
    ):
        if backend not in ("auto", "mlp", "autograd"):
            raise ValueError(
                f"backend={backend!r} is not allowed: expected 'auto', 'mlp' or 'autograd'"
            )
        reason = (
            mlp_backend_reason(model, loss, mode) if backend != "autograd" else "asked for autograd"
        )
        if backend == "mlp" and reason is not None:
            raise ValueError(f"backend='mlp' cannot serve this case: {reason}")
        self.backend = "mlp" if reason is None else "autograd"
        self.flat = FlatModel(model, params, dtype)
        self.x, self.y = self.flat.prepare(x, y)
        self.n_samples = int(self.x.shape[0])
        self.mode = mode
        self.chunk_size = chunk_size
        self.loss_name = loss if isinstance(loss, str) else getattr(loss, "__name__", "callable")
        self._loss = per_sample_loss(loss)
        P = self.flat.size
        super().__init__(dtype=np.float64, shape=(P, P))
        chunks = chunk_slices(self.n_samples, chunk_size)
        check_determinism(model, mode, self.x, check, chunked=len(chunks) > 1)
        self.n_products = 0
        self._batched = True
        with model_mode(model, mode), torch.enable_grad():
            if self.backend == "mlp":
                with torch.no_grad():
                    self._mlp = MLPCurvature(self.flat, self.x, self.y, self.n_samples, chunks)
                self.loss0, self.gradient = self._mlp.loss0, self._mlp.gradient
            else:
                self._build(chunks)

    _gauss_newton = False

    # -- helpers ----------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return self.flat.names

    @property
    def size(self) -> int:
        return self.flat.size

    def _chunk_loss(self, theta, sl):
        logits = self.flat.logits(theta, self.x[sl])
        losses = self._loss(logits, self.y[sl])
        if losses.shape != (logits.shape[0],):
            raise ValueError(
                f"loss must return per-sample losses of shape ({logits.shape[0]},), got {tuple(losses.shape)}"
            )
        return logits, losses.sum() / self.n_samples  # exact full-batch mean, any chunking

    def _apply(self, V: torch.Tensor) -> torch.Tensor:  # (P, m) -> (P, m)
        raise NotImplementedError

    def apply(self, V: torch.Tensor) -> torch.Tensor:
        """Product with a torch vector (P,) or matrix (P, m), float64 on the model's device."""
        V = torch.as_tensor(V)
        vec = V.ndim == 1
        V2 = (V[:, None] if vec else V).to(self.flat.device, self.flat.dtype)
        if V2.ndim != 2 or V2.shape[0] != self.size:
            raise ValueError(
                f"expected a vector ({self.size},) or a matrix ({self.size}, m), got {tuple(V.shape)}"
            )
        if V2.shape[1] == 0:
            return V2.clone()
        self.n_products += V2.shape[1]
        if self.backend == "mlp":
            with torch.no_grad():
                out = self._mlp.product(V2.contiguous(), gauss_newton=self._gauss_newton)
        else:
            out = self._apply(V2.contiguous())
        return out[:, 0] if vec else out

    def _vjp_batched(self, outputs, inputs, cotangents):
        """sum over a batch of cotangents (m, *outputs.shape) of J^T c, one backward when possible."""
        if self._batched:
            try:
                (g,) = torch.autograd.grad(
                    outputs,
                    inputs,
                    grad_outputs=cotangents,
                    retain_graph=True,
                    is_grads_batched=True,
                    allow_unused=True,
                )
                return g
            except RuntimeError:
                self._batched = False  # an op without a batching rule: fall back to a loop
        rows = []
        for c in cotangents:
            (g,) = torch.autograd.grad(
                outputs, inputs, grad_outputs=c, retain_graph=True, allow_unused=True
            )
            rows.append(g)
        if any(r is None for r in rows):
            return None
        return torch.stack(rows)

    # -- scipy / torch interface --------------------------------------------------------------
    def _matvec(self, v):
        return (
            self.apply(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)).reshape(-1))
            .cpu()
            .numpy()
        )

    def _matmat(self, V):
        return self.apply(torch.from_numpy(np.ascontiguousarray(V, dtype=np.float64))).cpu().numpy()

    def _adjoint(self):
        return self

    def matvec(self, v):
        if isinstance(v, torch.Tensor):
            return self.apply(v.reshape(-1))
        return super().matvec(v)

    def matmat(self, V):
        if isinstance(V, torch.Tensor):
            return self.apply(V)
        return super().matmat(V)

    def dense(self, block: int = 256) -> torch.Tensor:
        """The full P x P matrix (float64), symmetrised.

        For an awbench MLP (backend "mlp") with ReLU, or for the Gauss-Newton matrix of any
        activation, it is assembled exactly from Kronecker-factored layer blocks, one GEMM over
        samples per layer pair (about N * P^2 multiply-adds, no products counted); otherwise
        from products with identity blocks of ``block`` columns (counted in n_products).
        """
        if self.backend == "mlp" and (self._gauss_newton or self._mlp.act.second is None):
            with torch.no_grad():
                return self._mlp.dense(gauss_newton=self._gauss_newton)
        P = self.size
        out = torch.empty(P, P, dtype=self.flat.dtype, device=self.flat.device)
        for start in range(0, P, block):
            stop = min(start + block, P)
            E = torch.zeros(P, stop - start, dtype=self.flat.dtype, device=self.flat.device)
            E[torch.arange(start, stop), torch.arange(stop - start)] = 1.0
            out[:, start:stop] = self.apply(E)
        return 0.5 * (out + out.T)


class HessianOperator(CurvatureOperator):
    """Hessian of the mean loss over (x, y) w.r.t. a parameter subset, as a LinearOperator.

    Parameters
    ----------
    model : nn.Module, evaluated functionally; its parameters and buffers are never written.
    x, y : the full batch. The loss is ``sum_i loss_i / N`` over all N samples whatever
        ``chunk_size`` (chunks only bound memory).
    params : None (all), a parameter or module name, or a list of them (see resolve_params).
    loss : "cross_entropy" (default) or a callable ``(logits, y) -> per-sample losses``.
    mode : "eval" (default) or "train": the mode the model is evaluated in, set for the
        build and restored after; never inferred from the model.
    dtype : computation dtype (float64 by default; None keeps the model's).
    chunk_size : samples per chunk (None: one chunk).
    check : "raise" (default), "warn" or "off": what to do when :func:`determinism_report`
        finds that the loss is random (dropout in train mode) or couples samples (BatchNorm).
        Accepted randomness is frozen: every product sees the dropout masks drawn at build.
    backend : "auto" (default), "mlp" or "autograd". "mlp" (chosen automatically for an
        awbench MLP with cross-entropy and no active dropout; see mlp_backend_reason) caches
        the forward pass and runs the explicit R-operator; "autograd" builds the gradient graph
        of every chunk once (``create_graph=True``) and reuses it: a product is one backward
        pass through it, batched over columns with ``is_grads_batched``.

    ``loss0`` and ``gradient`` hold the loss and its gradient at theta0; ``n_products`` counts
    products; ``dense()`` gives the matrix.
    """

    def _build(self, chunks):
        self._theta = self.flat.theta0.clone().requires_grad_(True)
        self._grads = []
        total, grad = 0.0, torch.zeros_like(self.flat.theta0)
        for sl in chunks:
            _, loss = self._chunk_loss(self._theta, sl)
            (g,) = torch.autograd.grad(loss, self._theta, create_graph=True, allow_unused=True)
            if g is None:
                continue
            total += float(loss.detach())
            grad += g.detach()
            if g.requires_grad:  # else the loss is linear in theta on this chunk: H = 0 there
                self._grads.append(g)
        self.loss0 = total
        self.gradient = grad

    def _apply(self, V):
        out = torch.zeros_like(V)
        for g in self._grads:
            hv = self._vjp_batched(g, self._theta, V.T)
            if hv is not None:
                out += hv.T
        return out


class GaussNewtonOperator(CurvatureOperator):
    _gauss_newton = True

    """Generalised Gauss-Newton matrix ``(1/N) sum_i J_i^T (d^2 loss_i / dz^2) J_i`` (PSD for CE).

    Same arguments and guarantees as :class:`HessianOperator`; ``z`` are the model's outputs.
    Graphs are built once per chunk: the outputs z(theta), the vector-Jacobian product J^T u
    (differentiable in u, giving J v by the double-vjp trick) and the loss gradient in z.
    """

    def _build(self, chunks):
        self._theta = self.flat.theta0.clone().requires_grad_(True)
        self._parts = []
        total, grad = 0.0, torch.zeros_like(self.flat.theta0)
        for sl in chunks:
            z = self.flat.logits(self._theta, self.x[sl])
            u = torch.zeros_like(z, requires_grad=True)
            (jtu,) = torch.autograd.grad(
                z, self._theta, grad_outputs=u, create_graph=True, allow_unused=True
            )
            z_leaf = z.detach().requires_grad_(True)
            losses = self._loss(z_leaf, self.y[sl])
            loss = losses.sum() / self.n_samples
            (gz,) = torch.autograd.grad(loss, z_leaf, create_graph=True)
            total += float(loss.detach())
            (g,) = torch.autograd.grad(
                z, self._theta, grad_outputs=gz.detach(), retain_graph=True, allow_unused=True
            )
            if g is not None:
                grad += g
            if jtu is None or not jtu.requires_grad or not gz.requires_grad:
                continue
            self._parts.append((z, u, jtu, z_leaf, gz))
        self.loss0 = total
        self.gradient = grad

    def _apply(self, V):
        out = torch.zeros_like(V)
        for z, u, jtu, z_leaf, gz in self._parts:
            jv = self._vjp_batched(jtu, u, V.T)  # (m, n, C) = J v
            if jv is None:
                continue
            hjv = self._vjp_batched(gz, z_leaf, jv)  # loss Hessian in z times J v
            gv = self._vjp_batched(z, self._theta, hjv)
            if gv is not None:
                out += gv.T
        return out
