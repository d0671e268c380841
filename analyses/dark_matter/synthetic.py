"""Synthetic data and the "introduced error" model (§5, `synthetic_simulation.py`; spec acceptance checks 2–3).

Clean activations x = codes·D live exactly in a dictionary's image. Activation noise perturbs the input,
x′ = x + σ_act·N(0, I); reconstruction noise and feature ablation perturb the "SAE" output,
rec = (codes ⊙ mask)·D + σ_rec·N(0, I), where the mask drops the lowest-ranked fraction of features (ranked by
average activation). Then error = x′ − rec is regressed on x′ and FVU(rec), FVU(rec + linear) are measured.
With a real SAE (the reference's setup) x := Sae(acts) and codes = encode(x), so rec = decode(encode(x) ⊙ mask)
differs from x even at 0% ablation by the SAE's re-encoding error.
"""

from __future__ import annotations

import numpy as np
import torch

from analyses.dark_matter.method import decompose_sae_error, make_split
from interp.stats.metrics import r2


def sparse_feature_data(n: int = 20_000, d: int = 64, n_features: int = 512, mean_active: float = 8.0,
                        max_mag: float = 3.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes [n, n_features] and unit-norm dictionary [n_features, d] with heavy-tailed firing probabilities.

    Probabilities are sorted draws from a power(0.3) distribution, scaled so about `mean_active` features fire per
    sample (rarest last); magnitudes are U(0, max_mag). float32 outputs, reproducible from `seed`.
    """
    rng = np.random.default_rng(seed)
    probs = np.sort(rng.power(0.3, n_features))[::-1]
    probs = np.clip(probs * mean_active / probs.sum(), 0, 1)
    D = rng.standard_normal((n_features, d))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    fires = rng.random((n, n_features)) < probs
    codes = fires * rng.uniform(0, max_mag, (n, n_features))
    return torch.tensor(codes, dtype=torch.float32), torch.tensor(D, dtype=torch.float32)


def ablated_parts(codes: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor | None = None,
                  ablate_frac: float = 0.0, *, x: torch.Tensor | None = None,
                  feature_means: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean x and the noiseless ablated reconstruction rec = (codes ⊙ mask)·D + b (lowest-average features dropped).

    x: the clean activations (default codes·D + b). With an SAE, pass x = Sae(acts) and codes = encode(x): then rec
    at 0% ablation is Sae(x) ≠ x, keeping the SAE's own re-encoding error as the reference does.
    feature_means: the per-feature average activation used for the ranking (default codes.mean(0)).
    """
    b = b_dec if b_dec is not None else torch.zeros(W_dec.shape[1])
    if x is None:
        x = codes @ W_dec + b
    means = feature_means if feature_means is not None else codes.mean(0)
    order = torch.argsort(means)  # ascending average activation: the first ones are ablated
    n_drop = int(round(ablate_frac * codes.shape[1]))
    mask = torch.ones(codes.shape[1], dtype=codes.dtype)
    mask[order[:n_drop]] = 0
    rec = (codes * mask) @ W_dec + b
    return x, rec


def introduced_error(codes: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor | None = None, *,
                     sigma_act: float = 0.0, sigma_rec: float = 0.0, ablate_frac: float = 0.0, seed: int = 0,
                     train_frac: float = 0.5, fit_intercept: bool = True,
                     parts: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
    """FVU(rec), FVU(rec + linear), R²_vec and R²_norm of the introduced-error model (test split).

    parts: precomputed `ablated_parts(...)` (x, rec) to reuse across a noise grid.
    """
    g = torch.Generator().manual_seed(seed)
    x, rec0 = parts if parts is not None else ablated_parts(codes, W_dec, b_dec, ablate_frac)
    xp = x + sigma_act * torch.randn(x.shape, generator=g)
    rec = rec0 + sigma_rec * torch.randn(x.shape, generator=g)
    split = make_split(x.shape[0], train_frac=train_frac, seed=seed)
    dec = decompose_sae_error(xp, rec, split=split, fit_intercept=fit_intercept)
    t = split.test
    lin_sum = rec[t].double() + dec.linear_error[t].double()
    return {"fvu_rec": dec.fvu_sae, "fvu_linear_sum": dec.fvu_sae_plus_linear, "r2_vec": dec.r2_vec,
            "r2_norm": dec.r2_norm,
            "fvu_rec_flat": 1 - r2(xp[t], rec[t], "flat"), "fvu_linear_sum_flat": 1 - r2(xp[t], lin_sum, "flat")}


def introduced_error_grid(codes: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor | None = None, *,
                          sigmas: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0), ablate_frac: float = 0.5,
                          seed: int = 0, x: torch.Tensor | None = None,
                          feature_means: torch.Tensor | None = None, fit_intercept: bool = True
                          ) -> dict[str, object]:
    """The 5×5 (σ_act, σ_rec) grid and Table 1: Pearson r of {act, rec noise} with {linear, nonlinear} estimates.

    Estimated linear error = FVU(rec) − FVU(rec + linear); estimated nonlinear error = FVU(rec + linear)
    (the reference's flattened-R² convention). x, feature_means: as in `ablated_parts`. Every cell scales the same
    two N(0, I) draws (common random numbers), so the cells differ by σ alone and the 25-cell correlations carry no
    sampling noise between cells; the reference draws afresh per cell. fit_intercept=False is the reference's fit.
    """
    rows = []
    parts = ablated_parts(codes, W_dec, b_dec, ablate_frac, x=x, feature_means=feature_means)
    for sa in sigmas:
        for sr in sigmas:
            m = introduced_error(codes, W_dec, b_dec, sigma_act=sa, sigma_rec=sr, seed=seed, parts=parts,
                                 fit_intercept=fit_intercept)
            rows.append({"sigma_act": sa, "sigma_rec": sr, **m,
                         "est_linear": m["fvu_rec_flat"] - m["fvu_linear_sum_flat"],
                         "est_nonlinear": m["fvu_linear_sum_flat"]})
    table = {}
    for noise in ("sigma_act", "sigma_rec"):
        for est in ("est_linear", "est_nonlinear"):
            a = np.array([r[noise] for r in rows])
            e = np.array([r[est] for r in rows])
            table[f"{noise}~{est}"] = float(np.corrcoef(a, e)[0, 1]) if e.std() > 0 and a.std() > 0 else 0.0
    return {"grid": rows, "correlations": table}
