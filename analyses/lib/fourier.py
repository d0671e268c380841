"""Fourier labelling of modular-addition directions (ApolloResearch/rib, run_generate_labels_mod_add.py).

A direction's activation over the p×p grid of inputs (x, y) is 2-D Fourier transformed; its power is split into
the constant, `cos(kx)+cos(ky)` (power at (±k, 0) and (0, ±k), sine phases included) and `cos(k(x+y))`
(power at ±(k, k)) for k = 1 .. (p−1)/2.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def fourier_fractions(grid: Tensor) -> dict[str, np.ndarray]:
    """grid [p, p, n] -> fractions of power: const [n], single [n, K] (cos kx + cos ky), sum [n, K] (cos k(x+y))."""
    p = grid.shape[0]
    F = torch.fft.fft2(grid.to(torch.float64), dim=(0, 1))
    power = (F.abs() ** 2).numpy()
    total = power.sum((0, 1)) + 1e-300
    ks = np.arange(1, p // 2 + 1)
    single = (power[ks, 0] + power[p - ks, 0] + power[0, ks] + power[0, p - ks]) / total
    plus = (power[ks, ks] + power[p - ks, p - ks]) / total
    return {"const": power[0, 0] / total, "single": single.T, "sum": plus.T}


def label_directions(fr: dict[str, np.ndarray], kind: str) -> list[dict]:
    """Per direction: its best frequency and power fraction for `kind` 'single' (x/y) or 'sum' (x+y)."""
    A = fr[kind]
    out = []
    for i in range(A.shape[0]):
        k = int(A[i].argmax())
        out.append({"direction": i, "const": float(fr["const"][i]), "k": k + 1, "fraction": float(A[i, k]),
                    "total_" + kind: float(A[i].sum())})
    return out


def key_frequencies(labels: list[dict], min_fraction: float = 0.5) -> list[int]:
    """Distinct frequencies that carry at least `min_fraction` of some direction's power."""
    return sorted({r["k"] for r in labels if r["fraction"] >= min_fraction})
