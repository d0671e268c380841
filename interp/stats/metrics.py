"""R² and FVU, in memory and streaming, with the conventions named explicitly (all sums in float64).

Conventions for a multi-output target Y [n, d] and prediction Ŷ:
    "mean_over_dims"  mean_j (1 − SS_res_j / SS_tot_j), SS_tot around each column's mean over the rows given
                      (the test set's own mean: Engels et al.'s `calculate_r_squared`)
    "flat"            1 − Σ(Y − Ŷ)² / Σ(Y − mean(Y))² one scalar mean over all entries (`calculate_r_squared_torch`)
    "pooled"          1 − Σ_j SS_res_j / Σ_j SS_tot_j (variance-weighted; equals 1 − FVU)
FVU(x, x̂) = Σ‖x − x̂‖² / Σ‖x − mean(x)‖² (per-dimension mean over rows), i.e. 1 − R²_pooled.
A column that is constant over the rows has no R² (NaN per column) and is left out of "mean_over_dims" (sklearn
counts it as 1 or 0); a target with no variance at all gives NaN under every convention and for FVU. NaN/inf
inputs and mismatched shapes are refused.
"""

from __future__ import annotations

import torch

from interp.errors import ConfigError

_F64 = torch.float64
CONVENTIONS = ("mean_over_dims", "flat", "pooled")


def _2d(t: torch.Tensor) -> torch.Tensor:
    t = t.to(_F64)
    return t[:, None] if t.dim() == 1 else t


def _pair(y: torch.Tensor, yhat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both as float64 [n, d]; refuses mismatched shapes and NaN/inf (which would drop out of the means)."""
    y, yhat = _2d(y), _2d(yhat)
    if y.shape != yhat.shape:
        raise ConfigError(f"shapes differ: {tuple(y.shape)} vs {tuple(yhat.shape)}", hint="pass matching tensors")
    if not (bool(torch.isfinite(y).all()) and bool(torch.isfinite(yhat).all())):
        raise ConfigError("targets or predictions contain NaN/inf", hint="drop or fix those rows first")
    return y, yhat


def _one_minus(ss_res: torch.Tensor, ss_tot: torch.Tensor) -> float:
    """1 − SS_res / SS_tot, NaN when the target has no variance (as a constant column's R² is)."""
    return float(1 - ss_res / ss_tot) if float(ss_tot) > 0 else float("nan")


def r2_per_dim(y: torch.Tensor, yhat: torch.Tensor) -> torch.Tensor:
    """Per-column R² [d] with SS_tot around the rows' own column means (NaN for a constant column)."""
    y, yhat = _pair(y, yhat)
    ss_res = ((y - yhat) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    return torch.where(ss_tot > 0, 1 - ss_res / ss_tot.clamp_min(1e-300), torch.full_like(ss_tot, float("nan")))


def r2(y: torch.Tensor, yhat: torch.Tensor, convention: str = "mean_over_dims") -> float:
    """R² of a prediction under one of CONVENTIONS (see module docstring)."""
    y, yhat = _pair(y, yhat)
    if convention == "mean_over_dims":
        return float(torch.nanmean(r2_per_dim(y, yhat)))
    if convention == "flat":
        ss_tot = ((y - y.mean()) ** 2).sum()
        return _one_minus(((y - yhat) ** 2).sum(), ss_tot)
    if convention == "pooled":
        return 1.0 - fvu(y, yhat)
    raise ConfigError(f"unknown R² convention '{convention}'", hint=f"use one of {', '.join(CONVENTIONS)}")


def fvu(x: torch.Tensor, xhat: torch.Tensor) -> float:
    """Fraction of variance unexplained Σ‖x − x̂‖² / Σ‖x − x̄‖² over all rows and dims."""
    x, xhat = _pair(x, xhat)
    return 1.0 - _one_minus(((x - xhat) ** 2).sum(), ((x - x.mean(0)) ** 2).sum())


def normalized_mse(x: torch.Tensor, xhat: torch.Tensor) -> float:
    """Mean over rows of ‖x̂ − x‖² / ‖x‖² (Engels et al.'s alternative y-axis)."""
    x, xhat = _pair(x, xhat)
    return float((((xhat - x) ** 2).sum(1) / (x ** 2).sum(1).clamp_min(1e-300)).mean())


class StreamingR2:
    """Accumulate Σy, Σy², Σ(y − ŷ)² per column (and scalar totals) to get R²/FVU over many batches."""

    def __init__(self, d: int):
        self.d, self.n = d, 0
        self.sy = torch.zeros(d, dtype=_F64)
        self.syy = torch.zeros(d, dtype=_F64)
        self.sres = torch.zeros(d, dtype=_F64)
        self.shift: torch.Tensor | None = None

    def update(self, y: torch.Tensor, yhat: torch.Tensor) -> StreamingR2:
        """Add a batch of targets y [n, d] and predictions ŷ [n, d]."""
        y, yhat = _2d(y).cpu(), _2d(yhat).cpu()
        if y.shape != yhat.shape or y.shape[1] != self.d:
            raise ConfigError(f"batch shapes {tuple(y.shape)}, {tuple(yhat.shape)} do not match d={self.d}",
                              hint="pass [n, d] targets and predictions")
        y, yhat = _pair(y, yhat)
        if y.shape[0] == 0:
            return self
        if self.shift is None:
            self.shift = y.mean(0)
        yc = y - self.shift
        self.n += y.shape[0]
        self.sy += yc.sum(0)
        self.syy += (yc ** 2).sum(0)
        self.sres += ((y - yhat) ** 2).sum(0)
        return self

    def ss_tot(self) -> torch.Tensor:
        """Per-column Σ(y − ȳ)²."""
        return self.syy - self.sy ** 2 / max(self.n, 1)

    def r2_per_dim(self) -> torch.Tensor:
        """Per-column R² [d]."""
        tot = self.ss_tot()
        return torch.where(tot > 0, 1 - self.sres / tot.clamp_min(1e-300), torch.full_like(tot, float("nan")))

    def r2(self, convention: str = "mean_over_dims") -> float:
        """R² under a convention of CONVENTIONS."""
        if self.n == 0:
            raise ConfigError("no rows accumulated", hint="update() with at least one batch first")
        if convention == "mean_over_dims":
            return float(torch.nanmean(self.r2_per_dim()))
        if convention == "pooled":
            return 1.0 - self.fvu()
        if convention == "flat":
            n_el = self.n * self.d
            shift_mean = self.shift.mean() if self.shift is not None else 0.0
            # Σ(y − s_j)² around a scalar mean m: Σ(y−s)² − n_el·(mean(y−s) + mean(s) − m)² with m = overall mean
            tot_raw = self.syy.sum() + 2 * (self.sy * (self.shift - shift_mean)).sum() \
                + self.n * ((self.shift - shift_mean) ** 2).sum()
            mean_dev = (self.sy.sum() / n_el)
            tot = tot_raw - n_el * mean_dev ** 2
            return _one_minus(self.sres.sum(), tot)
        raise ConfigError(f"unknown R² convention '{convention}'", hint=f"use one of {', '.join(CONVENTIONS)}")

    def fvu(self) -> float:
        """Σ SS_res / Σ SS_tot over all columns."""
        return 1.0 - _one_minus(self.sres.sum(), self.ss_tot().sum())
