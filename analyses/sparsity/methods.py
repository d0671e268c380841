"""Training-free sparsification of a linear layer's input (TEAL, CATS, WINA, R-Sparse), for y = W x with HF/torch
weights W [out=m, in=n]; the column norm c_j = ‖W[:, j]‖₂ belongs to input channel j.

TEAL:     keep x_j where |x_j| > t_p, t_p the p-quantile of |x| on calibration data (not TEAL's icdf(0.5 + p/2),
          which assumes a zero-mean symmetric input, spec §4); greedy per-block allocation (teal/greedyopt.py).
CATS:     zero z = SiLU(W_gate x) where |z| ≤ t, t the k-quantile of |z| (non-gated MLPs: the activation itself).
WINA:     keep the channels with the largest |x_j| · c_j (Eq. 4); exact optimum for column-orthogonal W.
R-Sparse: y ≈ W (x ⊙ m) + U_r S_r V_rᵀ (x ⊙ (1 − m)), m = 1[|x_j| · c_j > τ]; budget (k, r) from (s, α).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch


def abs_quantile_threshold(x: torch.Tensor, p: float) -> float:
    """t with a fraction p of |x| at or below it (interp's TEAL threshold: exact for any distribution)."""
    flat = x.detach().abs().double().flatten()
    if flat.numel() > 2_000_000:  # torch.quantile's size limit: a strided subsample
        flat = flat[:: flat.numel() // 2_000_000 + 1]
    return float(torch.quantile(flat, p))


def icdf_symmetric_threshold(x: torch.Tensor, p: float, bins: int = 10_000) -> float:
    """TEAL's code: F⁻¹(0.5 + p/2) of the signed values' histogram (right only for zero-mean symmetric x)."""
    v = x.detach().double().flatten().numpy()
    lo, hi = np.quantile(v, [0.01, 0.99])
    edges = np.concatenate([[v.min()], np.linspace(lo, hi, bins - 1), [v.max()]])
    counts, edges = np.histogram(v, bins=edges)
    cdf = np.concatenate([[0.0], np.cumsum(counts) / counts.sum()])
    return float(np.interp(0.5 + p / 2, cdf, edges))


def cats_threshold(z: torch.Tensor, k: float) -> float:
    """CATS: the k-quantile of |z| (its empirical CDF reaches k there)."""
    return abs_quantile_threshold(z, k)


def column_norms(w: torch.Tensor) -> torch.Tensor:
    """c_j = ‖W[:, j]‖₂ for W [out, in] (HF `weight.norm(dim=0)`)."""
    return w.norm(dim=0)


def wina_mask(x: torch.Tensor, w: torch.Tensor, k: int | None = None, threshold: float | None = None) -> torch.Tensor:
    """WINA gate on x [..., n]: the top-k of |x ⊙ c| per row, or |x ⊙ c| > threshold."""
    score = (x * column_norms(w)).abs()
    if (k is None) == (threshold is None):
        raise ValueError("give exactly one of k and threshold")
    if threshold is not None:
        return score > threshold
    idx = score.topk(int(k), dim=-1).indices
    return torch.zeros_like(score, dtype=torch.bool).scatter(-1, idx, True)


def wina_transform(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Ŵ = W V, V) with W = U S Vᵀ: Ŵ has orthogonal columns; inputs must be rotated by Vᵀ (x̂ = Vᵀ x)."""
    _, _, vh = torch.linalg.svd(w.double(), full_matrices=True)
    v = vh.T
    return (w.double() @ v).to(w.dtype), v.to(w.dtype)


def rsparse_budget(n: int, m: int, s: float, alpha: float) -> tuple[int, int]:
    """(k kept channels, rank r) for W [m, n] at sparsity s and sparse share α (R-Sparse utils/setup.py)."""
    k = math.floor(n * (1 - s) * alpha)
    budget = m * n * (1 - s)
    r = max(0, math.floor((budget - k * m) / (n + m)))
    return k, r


def rsparse_linear(x: torch.Tensor, w: torch.Tensor, tau: float, rank: int, bias: torch.Tensor | None = None,
                   svd: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """R-Sparse: active channels (|x_j| · c_j > τ) exactly, the rest through the rank-r SVD of W."""
    u, s, vh = svd if svd is not None else torch.linalg.svd(w.double(), full_matrices=False)
    keep = (x.abs() * column_norms(w)) > tau
    xs, xr = x * keep, x * ~keep
    lowrank = ((xr.to(u.dtype) @ vh[:rank].T) * s[:rank]) @ u[:, :rank].T
    y = xs @ w.T + lowrank.to(x.dtype)
    return y + bias if bias is not None else y


def teal_greedy(block: Callable[[Sequence[float]], torch.Tensor], dense: torch.Tensor, weights: Sequence[float],
                base_step: float = 0.05, s_max: float = 0.9, last_fraction: float = 0.25) -> list[dict]:
    """TEAL's block-wise greedy allocation: from s = 0, repeatedly raise the sparsity of the one projection whose
    step (base_step / w_p, so every step skips the same number of weights) adds the least output error
    E = mean ‖Y − Ŷ‖₂ over the last `last_fraction` of positions; log a row per step until f(s) ≥ s_max.

    block(s) -> the block output [batch, pos, d] with projection p at sparsity s_p; dense: the dense output.
    """
    w = np.asarray(weights, dtype=np.float64)
    steps = base_step / w
    s = np.zeros(len(w))
    start = int(dense.shape[1] * (1 - last_fraction))

    def err(out: torch.Tensor) -> float:
        return float((out - dense)[:, start:].double().norm(dim=-1).mean())

    def f(sv: np.ndarray) -> float:
        return float((w * sv).sum() / w.sum())

    rows = []
    while f(s) < s_max - 1e-12:
        best = None
        for p in range(len(w)):
            if s[p] >= 1 - 1e-12:
                continue
            trial = s.copy()
            trial[p] = min(1.0, s[p] + steps[p])
            e = err(block(list(trial)))
            if best is None or e < best[0]:
                best = (e, p, trial)
        if best is None:
            break
        s = best[2]
        uniform = err(block([f(s)] * len(w)))
        rows.append({"f": f(s), "error": best[0], "uniform_error": uniform, "s": s.tolist()})
    return rows
