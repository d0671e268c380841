"""Vectorised section Jacobians and the integrated-gradient quantities of LIB (spec lib.md §3-4).

The reference (ApolloResearch/rib, rib/linalg.py) runs one backward pass per output dimension (and output
position). Here one `torch.func.vjp` is taken of the batch-summed output and `vmap`ped over all one-hot
cotangents at once (the batch-sum trick gives every sample's Jacobian because samples are independent);
`jacobian_loop` keeps the per-output loop as the independent reference for tests and the benchmark.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

Fn = Callable[[Tensor], Tensor]


def _flat_out(fn: Fn, z: Tensor) -> Tensor:
    """Batch-summed, flattened output of fn at z: [n_out]."""
    return fn(z).sum(0).reshape(-1)


def jacobian_vmap(fn: Fn, z: Tensor) -> Tensor:
    """Per-sample Jacobians [B, n_out, *in] of a batch-independent fn: z [B, *in] -> y [B, *out]."""
    z = z.detach()
    y, vjp_fn = torch.func.vjp(lambda t: _flat_out(fn, t), z)
    eye = torch.eye(y.shape[0], dtype=y.dtype)
    (grads,) = torch.func.vmap(vjp_fn)(eye)
    return grads.movedim(0, 1)


def jacobian_loop(fn: Fn, z: Tensor) -> Tensor:
    """Same as `jacobian_vmap` with one backward pass per output dimension, as the reference does."""
    z = z.detach().requires_grad_(True)
    y = _flat_out(fn, z)
    rows = [torch.autograd.grad(y[i], z, retain_graph=True)[0] for i in range(y.shape[0])]
    return torch.stack(rows, dim=1)


def integrated_jacobian(fn: Fn, x: Tensor, alphas: np.ndarray, weights: np.ndarray,
                        method: str = "vmap") -> Tensor:
    """Σ_α w_α ∂fn/∂z at z = α x (§3.1): [B, n_out, *in]."""
    jac = jacobian_vmap if method == "vmap" else jacobian_loop
    out = None
    for a, w in zip(alphas, weights):
        J = jac(fn, float(a) * x) * float(w)
        out = J if out is None else out + J
    return out


def integrated_gradient(objective: Callable[[Tensor, Tensor], Tensor], x: Tensor,
                        alphas: np.ndarray, weights: np.ndarray) -> Tensor:
    """Σ_α w_α ∂objective(αx, x)/∂(αx) for a scalar, batch-summed objective: [B, *in] (one backward per α)."""
    x = x.detach()
    g = torch.zeros_like(x)
    for a, w in zip(alphas, weights):
        z = (float(a) * x).requires_grad_(True)
        (gz,) = torch.autograd.grad(objective(z, x), z)
        g += float(w) * gz
    return g


def chunks(n: int, size: int) -> list[slice]:
    """Batch slices of at most `size` rows."""
    return [slice(i, min(i + size, n)) for i in range(0, n, max(1, size))]


def auto_chunk(n_out: int, per_sample_in: int, budget_bytes: float = 2.5e8) -> int:
    """Rows per chunk so that a float64 Jacobian chunk [rows, n_out, in] stays under `budget_bytes`."""
    return max(1, int(budget_bytes // (8 * max(1, n_out) * max(1, per_sample_in))))


def section_jacobian(section: Fn, x: Tensor, C_out: Tensor | None, alphas: np.ndarray, weights: np.ndarray,
                     method: str = "auto", R_in: Tensor | None = None) -> Tensor:
    """Σ_α w_α ∂(section(z) @ C_out)/∂z at z = αx: [B, n_out, (P), d_in].

    method 'auto' uses the closed-form step Jacobians (analyses.lib.structured) when the section has them and
    its output has no position axis, else `torch.func` (vmap); 'vmap' / 'loop' force autodiff.
    With R_in the result is the Jacobian w.r.t. ẑ where z = ẑ R_in (the input rotated to a basis).
    """
    from analyses.lib.structured import structured_jacobian

    steps = getattr(section, "jac_steps", None)
    if method == "auto" and steps is not None:
        with torch.no_grad():
            if section(x[:1]).ndim == 2:
                out = None
                for a, w in zip(alphas, weights):
                    J = structured_jacobian(steps, float(a) * x.detach(), C_out, R_in)
                    J = J if float(w) == 1.0 else J * float(w)                 # gradient rule: no copy
                    out = J if out is None else out + J
                return out
    g = section if C_out is None else (lambda z: section(z) @ C_out)
    J = integrated_jacobian(g, x, alphas, weights, "loop" if method == "loop" else "vmap")
    return J if R_in is None else J @ R_in.T
