"""The standard SAE numbers, as streaming sums over token batches (bounded memory at any token count).

Reconstruction, for the activations x [N, d] of the hook that is replaced, their prediction x̂ and the latents
f [N, d_sae] (sums over rows and dims). For an SAE x is its own hook and x̂ = decode(encode(x)); for a transcoder
x is its OUTPUT hook's activations y and x̂ = ŷ = decode(encode(x_in)) + x_in W_skipᵀ from its input hook's x_in, so
the variance in the denominator is the output's:
    FVU = Σ‖x − x̂‖² / Σ‖x − x̄‖²,   explained variance = 1 − FVU          (x̄: the mean activation over the tokens)
    L0 = mean over tokens of #{i : f_i ≠ 0};   density_i = fraction of tokens with f_i ≠ 0
    dead: density_i = 0;   dense: density_i > the dense threshold
Loss recovered (Bricken et al. 2023; SAELens' evals), for the next-token cross-entropy L, L_sae with the replaced
hook set to x̂, and the baseline L_b of ablating that hook (zero, or its mean activation):
    CE loss recovered = (L_b − L_sae) / (L_b − L_clean)
    KL recovered      = 1 − KL(clean ‖ sae) / KL(clean ‖ baseline)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class ReconSums:
    """Running sums of one SAE's reconstruction over token batches (float64)."""

    d_sae: int
    n: int = 0
    sse: float = 0.0
    sum_x: np.ndarray | None = None
    sum_sq: float = 0.0
    l0: float = 0.0
    fires: np.ndarray = field(default=None)  # type: ignore[assignment]
    act_sum: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.fires = np.zeros(self.d_sae, dtype=np.int64)
        self.act_sum = np.zeros(self.d_sae, dtype=np.float64)

    def update(self, x: torch.Tensor, rec: torch.Tensor, f: torch.Tensor) -> None:
        """x [N, d] the replaced hook's activations, rec [N, d] their prediction; f [N, d_sae] the latents."""
        x64, r64 = x.double(), rec.double()
        self.n += x.shape[0]
        self.sse += float(((x64 - r64) ** 2).sum())
        s = x64.sum(0).numpy()
        self.sum_x = s if self.sum_x is None else self.sum_x + s
        self.sum_sq += float((x64 ** 2).sum())
        on = f != 0
        self.l0 += float(on.sum())
        self.fires += on.sum(0).numpy().astype(np.int64)
        self.act_sum += f.double().sum(0).numpy()

    def total_variance(self) -> float:
        """Σ‖x − x̄‖² from the sums: Σ‖x‖² − ‖Σx‖² / n."""
        return self.sum_sq - float(self.sum_x @ self.sum_x) / self.n

    def result(self, dense_density: float) -> dict:
        density = self.fires / max(self.n, 1)
        fvu = self.sse / self.total_variance()
        return {"n_tokens": self.n, "fvu": fvu, "explained_variance": 1.0 - fvu, "l0": self.l0 / self.n,
                "dead_fraction": float((self.fires == 0).mean()), "dense_fraction": float((density >
                                                                                          dense_density).mean()),
                "density": density, "mean_activation": self.act_sum / np.maximum(self.fires, 1)}


@dataclass
class LossSums:
    """Token-weighted sums of next-token CE and KL under one intervention."""

    tokens: int = 0
    ce: float = 0.0
    kl: float = 0.0

    def update(self, ce: float, kl: float, n: int) -> None:
        self.tokens += n
        self.ce += ce * n
        self.kl += kl * n

    @property
    def mean_ce(self) -> float:
        return self.ce / self.tokens

    @property
    def mean_kl(self) -> float:
        return self.kl / self.tokens


def loss_recovered(clean: float, sae: float, baseline: float) -> float:
    """(L_b − L_sae) / (L_b − L_clean); NaN when the baseline does not change the loss."""
    gap = baseline - clean
    return (baseline - sae) / gap if abs(gap) > 1e-12 else float("nan")


def kl_recovered(kl_sae: float, kl_baseline: float) -> float:
    """1 − KL_sae / KL_baseline; NaN when ablating changes nothing."""
    return 1.0 - kl_sae / kl_baseline if kl_baseline > 1e-12 else float("nan")


def density_histogram(density: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(counts, edges) of log10 density over the latents that fire, and the number that never fire."""
    alive = density[density > 0]
    edges = np.linspace(-7.0, 0.0, bins + 1)
    counts, _ = np.histogram(np.clip(np.log10(alive), -7.0, 0.0), bins=edges)
    return counts, edges, int((density == 0).sum())
