"""LIB linear algebra (spec lib.md §1-2): bias-augmented grams, centering, PCA, Λ sorting, integration points.

All functions work in float64; the last coordinate of every node-layer activation is the folded bias "1".
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from interp.errors import ConfigError

INTEGRATION_RULES = ("gradient", "trapezoidal", "gauss-legendre")


def fold_bias(acts: Tensor) -> Tensor:
    """Append the constant-1 coordinate: [..., d] -> [..., d+1] (§1, bias folding)."""
    return torch.cat([acts, torch.ones_like(acts[..., :1])], dim=-1)


def gram(acts: Tensor, mean: Tensor | None = None) -> Tensor:
    """G = (1/(N·P)) Σ f fᵀ over all leading axes; with `mean`, f − μ with the bias coordinate unshifted (§2.1)."""
    flat = acts.reshape(-1, acts.shape[-1]).to(torch.float64)
    if mean is not None:
        shift = mean.to(flat).clone()
        shift[-1] = 0.0
        flat = flat - shift
    return flat.T @ flat / flat.shape[0]


def centering_matrix(mean: Tensor, inverse: bool = False) -> Tensor:
    """Y with x @ Y = x − μ (bias coordinate untouched), or its inverse Y⁻¹ that adds μ back (§2.3)."""
    if abs(abs(float(mean[-1])) - 1) > 1e-6:
        raise ConfigError("the last coordinate of the mean must be the folded bias 1",
                          hint="fold the bias with analyses.lib.linalg.fold_bias before building LIB")
    Y = torch.eye(mean.shape[0], dtype=mean.dtype)
    Y[-1, :-1] = mean[:-1] if inverse else -mean[:-1]
    return Y


def eigendecompose(x: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (abs, descending) and eigenvectors (columns) of a symmetric matrix, in float64 (§2.2)."""
    vals, vecs = torch.linalg.eigh(x.to(torch.float64))
    vals = vals.abs()
    idx = torch.argsort(vals, descending=True, stable=True)
    return vals[idx], vecs[:, idx]


def masked_eigendecompose(x: Tensor, n_masked: int) -> tuple[Tensor, Tensor]:
    """Eigendecompose x[n:, n:] and keep the first n coordinates fixed (const / LN-variance directions, §2.7)."""
    sub_vals, sub_vecs = eigendecompose(x[n_masked:, n_masked:])
    vecs = torch.block_diag(torch.eye(n_masked, dtype=sub_vecs.dtype), sub_vecs)
    return torch.cat([x.diag()[:n_masked].to(sub_vals), sub_vals]), vecs


def move_const_dir_first(D: Tensor, U: Tensor, threshold: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Put the unique direction with a bias component and a non-zero eigenvalue first (§2.2, center=True)."""
    is_const = (U[-1, :].abs() > threshold) & (D.abs() > threshold)
    if int(is_const.sum()) != 1:
        raise ConfigError(f"expected exactly one constant direction in the centered gram, found {int(is_const.sum())}",
                          hint="centering needs the folded bias as the last activation coordinate; "
                               "try center=False")
    i = int(is_const.nonzero()[0, 0])
    order = torch.tensor([i] + [j for j in range(D.shape[0]) if j != i])
    return D[order], U[:, order]


def sorted_lambda_matrices(Lam: Tensor, threshold: float, ignore_first_n: int = 0) -> tuple[Tensor, Tensor]:
    """L = diag(√Λ)[:, kept] and L_inv = diag(1/√Λ)[kept, :]: sort Λ descending (first n fixed), drop Λ < thr (§2.9)."""
    lam = Lam.abs()
    rest = torch.argsort(lam[ignore_first_n:], descending=True, stable=True) + ignore_first_n
    idx = torch.cat([torch.arange(ignore_first_n), rest])
    n_small = int((lam < threshold).sum())
    kept = idx[: len(idx) - n_small] if n_small else idx
    s = lam.sqrt()
    return torch.diag(s)[:, kept], torch.diag(1.0 / s)[kept, :]


def integration_points(n_intervals: int, rule: str = "gradient", boundary_eps: float = 1e-3
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Integration points α and weights for ∫₀¹ dα (§3.1): gradient (α=1), trapezoidal in [ε, 1−ε], Gauss-Legendre."""
    if rule == "gradient":
        if n_intervals != 0:
            raise ConfigError("integration 'gradient' takes n_intervals=0",
                              hint="set n_intervals=0 or use trapezoidal / gauss-legendre")
        return np.array([1.0]), np.array([1.0])
    if rule == "gauss-legendre":
        x, w = np.polynomial.legendre.leggauss(n_intervals + 1)
        return (x + 1) / 2, w / 2
    if rule == "trapezoidal":
        if n_intervals == 0:
            return np.array([0.5]), np.array([1.0])
        eps = boundary_eps / (n_intervals + 1)
        alphas = np.linspace(eps, 1 - eps, n_intervals + 1)
        w = np.full(n_intervals + 1, 1.0 / n_intervals)
        w[0] /= 2
        w[-1] /= 2
        return alphas, w
    raise ConfigError(f"unknown integration rule '{rule}'", hint=f"use one of {', '.join(INTEGRATION_RULES)}")
