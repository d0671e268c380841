"""Activation-sparsity metrics of an MLP: Lazy Neuron's nonzero fraction, FAT-ε, and Sparsing Law's CETT.

Notation (spec §1): a [N, d_ff] are MLP activations of N tokens, W_out the matrix that consumes them. In
transformer-lens W_out is [d_ff, d_model], so neuron i writes a_i · W_out[i, :] and its output norm is
    ‖n_i‖₂ = |a_i| · ‖W_out[i, :]‖₂                                          (Sparsing Law Eq. 2)
CETT of a skipped set D (Eq. 3), per token, then averaged over tokens (the reference code's mean of ratios):
    CETT_t = ‖Σ_{i∈D} n_{t,i}‖₂ / ‖Σ_i n_{t,i}‖₂,   D = {i : ‖n_{t,i}‖₂ < τ}  (bias excluded)
The activation ratio at τ is the fraction of (token, neuron) pairs kept: A = mean 1[‖n_{t,i}‖₂ ≥ τ].
"""

from __future__ import annotations

import torch


def nnz_fraction(acts: torch.Tensor, eps: float = 0.0) -> float:
    """Lazy Neuron's nonzero fraction (eps=0: exact zeros, ReLU only) or FAT-ε's kept fraction |a| > eps."""
    return float((acts.abs() > eps).double().mean())


def neuron_norms(acts: torch.Tensor, w_out: torch.Tensor) -> torch.Tensor:
    """‖n_i‖₂ = |a_i| · ‖W_out[i, :]‖₂ for TL's W_out [d_ff, d_model]: [N, d_ff]."""
    return acts.abs() * w_out.norm(dim=1)


def cett(acts: torch.Tensor, w_out: torch.Tensor, tau: float, reduce: str = "mean_of_ratios") -> float:
    """CETT at threshold τ: the skipped neurons' share of the MLP output norm (Eq. 3; bias excluded).

    reduce: "mean_of_ratios" (per token, then the mean: the reference code) or "ratio_of_sums".
    """
    a = acts.double()
    w = w_out.double()
    skipped = neuron_norms(a, w) < tau
    num = ((a * skipped) @ w).norm(dim=-1)
    den = (a @ w).norm(dim=-1)
    if reduce == "ratio_of_sums":
        return float(num.sum() / den.sum())
    if reduce != "mean_of_ratios":
        raise ValueError(f"reduce must be mean_of_ratios or ratio_of_sums, got {reduce!r}")
    ok = den > 0
    return float((num[ok] / den[ok]).mean())


def activation_ratio(acts: torch.Tensor, w_out: torch.Tensor, tau: float) -> float:
    """A = fraction of (token, neuron) pairs with ‖n_i‖₂ ≥ τ (the ones a CETT-thresholded forward keeps)."""
    return float((neuron_norms(acts.double(), w_out.double()) >= tau).double().mean())


def cett_threshold(acts: torch.Tensor, w_out: torch.Tensor, c: float, *, iters: int = 60,
                   method: str = "bisect") -> float:
    """τ with CETT(τ) = c: bisection on τ in [0, the 0.99 quantile of ‖n‖] (CETT is monotone only approximately,
    spec §3.2; the bisection returns the largest τ whose CETT is ≤ c at its resolution).

    method "grid": the reference's 65,536 evenly spaced candidates and a binary search for the first with CETT > c.
    """
    r = neuron_norms(acts.double(), w_out.double()).flatten()
    sample = r[:: max(1, r.numel() // 65_536)]
    hi = float(torch.quantile(sample, 0.99))
    if c <= 0:
        return 0.0
    if method == "grid":
        grid = torch.linspace(float(r.min()), hi, 65_536, dtype=torch.float64)
        lo_i, hi_i = 0, len(grid) - 1
        while lo_i < hi_i:  # first candidate with CETT > c
            mid = (lo_i + hi_i) // 2
            if cett(acts, w_out, float(grid[mid])) > c:
                hi_i = mid
            else:
                lo_i = mid + 1
        return float(grid[max(lo_i - 1, 0)])
    if method != "bisect":
        raise ValueError(f"method must be bisect or grid, got {method!r}")
    lo = 0.0
    if cett(acts, w_out, hi) <= c:
        return hi
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if cett(acts, w_out, mid) > c:
            hi = mid
        else:
            lo = mid
    return lo
