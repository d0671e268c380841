"""Robust nonlinear least-squares curve fitting: multi-start `scipy.optimize.least_squares`, R², AIC, nested tests.

Single-start nonlinear fits of saturating/peaked curves often stop in a flat local minimum; fitting from a grid of
starting points and keeping the lowest residual is the cheap cure. Everything here is model-agnostic: a model is a
function `f(x, *params) -> y` with an optional analytic Jacobian `jac(x, *params) -> [n, k]`. All maths in float64.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from interp.errors import ConfigError

Model = Callable[..., np.ndarray]


@dataclass
class FitResult:
    """Best fit over all starts: parameters, goodness of fit, and how many starts converged."""

    params: np.ndarray
    sse: float
    r2: float
    aic: float
    n: int
    k: int
    success: bool
    n_starts: int = 1
    n_converged: int = 0
    start: np.ndarray | None = None
    message: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-able summary (parameters as a list)."""
        return {
            "params": [float(p) for p in self.params], "sse": self.sse, "r2": self.r2, "aic": self.aic,
            "n": self.n, "k": self.k, "success": self.success, "n_starts": self.n_starts,
            "n_converged": self.n_converged, "message": self.message,
        }


def r2_score(y: np.ndarray, yhat: np.ndarray) -> float:
    """Coefficient of determination 1 − SSE/SST (NaN when y is constant)."""
    y = np.asarray(y, dtype=np.float64)
    yhat = np.asarray(yhat, dtype=np.float64)
    if y.shape != yhat.shape:
        raise ConfigError(f"shapes differ: {y.shape} vs {yhat.shape}", hint="pass matching arrays")
    sst = float(np.sum((y - y.mean()) ** 2))
    sse = float(np.sum((y - yhat) ** 2))
    return float("nan") if sst == 0 else 1.0 - sse / sst


def aic_gaussian(sse: float, n: int, k: int) -> float:
    """Akaike information criterion for Gaussian errors with unknown variance: n·log(SSE/n) + 2k."""
    if n <= 0:
        return float("nan")
    return n * math.log(max(sse, 1e-300) / n) + 2 * k


def lr_statistic(sse_restricted: float, sse_full: float, n: int) -> float:
    """Likelihood-ratio statistic n·log(SSE_restricted/SSE_full) for nested Gaussian models (≈ χ² with Δk dof)."""
    return n * math.log(max(sse_restricted, 1e-300) / max(sse_full, 1e-300))


def start_grid(**axes: Sequence[float]) -> list[dict[str, float]]:
    """Cartesian product of named starting values, e.g. start_grid(beta=[1, 10], tau=[1e-3, 1e-1])."""
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]


def _finite_start(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Clip a start strictly inside the bounds (least_squares rejects starts on or outside them)."""
    p = np.asarray(p, dtype=np.float64).copy()
    span = np.where(np.isfinite(hi - lo), hi - lo, 1.0)
    eps = 1e-10 * np.maximum(span, 1.0)
    return np.clip(p, lo + eps, hi - eps)


def fit_curve(
    f: Model,
    x: np.ndarray,
    y: np.ndarray,
    starts: Iterable[Sequence[float]],
    *,
    jac: Model | None = None,
    bounds: tuple[Sequence[float], Sequence[float]] | None = None,
    method: str = "trf",
    max_nfev: int | None = 2000,
    weights: np.ndarray | None = None,
    loss: str = "linear",
    screen_nfev: int | None = 60,
    refine_top: int = 3,
    x_scale: str | float = "jac",
) -> FitResult:
    """Least-squares fit of `f(x, *p)` to `y` from every start; keep the lowest-SSE finite fit.

    x, y: [n] data; starts: iterable of k-vectors; jac: analytic Jacobian [n, k] (else finite differences);
    bounds: (lower, upper) k-vectors; weights: optional per-point weights (residuals are multiplied by them).
    With many starts, every start first runs `screen_nfev` evaluations and only the `refine_top` lowest-SSE
    screened fits continue to `max_nfev` (screen_nfev=None refines every start).
    """
    from scipy.optimize import least_squares

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ConfigError(f"x and y must be 1-D of the same length, got {x.shape} and {y.shape}",
                          hint="pass one series per fit")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=np.float64)[ok]
    starts = [np.asarray(s, dtype=np.float64) for s in starts]
    if not starts:
        raise ConfigError("no starting points given", hint="pass at least one start vector")
    k = starts[0].size
    if x.size < k:
        raise ConfigError(f"{x.size} finite points cannot fit {k} parameters", hint="use more checkpoints")
    lo = np.full(k, -np.inf) if bounds is None else np.asarray(bounds[0], dtype=np.float64)
    hi = np.full(k, np.inf) if bounds is None else np.asarray(bounds[1], dtype=np.float64)

    def resid(p: np.ndarray) -> np.ndarray:
        r = (f(x, *p) - y) * w
        return np.where(np.isfinite(r), r, 1e150)

    def jac_analytic(p: np.ndarray) -> np.ndarray:
        J = np.asarray(jac(x, *p), dtype=np.float64) * w[:, None]
        return np.where(np.isfinite(J), J, 0.0)

    jac_fn = "2-point" if jac is None else jac_analytic

    def solve(p0: np.ndarray, nfev: int | None):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return least_squares(resid, p0, jac=jac_fn, bounds=(lo, hi), method=method, max_nfev=nfev,
                                     loss=loss, x_scale=x_scale)
        except (ValueError, np.linalg.LinAlgError, FloatingPointError):  # a start the solver rejects
            return None

    p0s = [_finite_start(s, lo, hi) for s in starts]
    p0s = [p for p in p0s if np.all(np.abs(resid(p)) < 1e149)]
    if screen_nfev is not None and len(p0s) > refine_top:
        screened = [(sol.cost, sol.x) for sol in (solve(p, screen_nfev) for p in p0s) if sol is not None]
        screened.sort(key=lambda c: c[0] if np.isfinite(c[0]) else np.inf)
        p0s = [_finite_start(xv, lo, hi) for _, xv in screened[:refine_top]]
    best: FitResult | None = None
    n_conv = 0
    for p0 in p0s:
        sol = solve(p0, max_nfev)
        if sol is None:
            continue
        yhat = f(x, *sol.x)
        if not np.all(np.isfinite(yhat)):
            continue
        n_conv += int(sol.success)
        sse = float(np.sum(((yhat - y) * w) ** 2))
        if best is None or sse < best.sse:
            best = FitResult(sol.x.copy(), sse, r2_score(y, yhat), aic_gaussian(sse, x.size, k), x.size, k,
                             bool(sol.success), start=p0, message=str(sol.message))
    if best is None:
        best = FitResult(np.full(k, np.nan), float("inf"), float("nan"), float("nan"), x.size, k, False,
                         message="no start gave a finite residual")
    best.n_starts = len(starts)
    best.n_converged = n_conv
    return best


@dataclass(frozen=True)
class MinMaxScaler1D:
    """Affine map y -> (y - lo)/scale used to fit in normalised space and map parameters back."""

    lo: float
    scale: float

    @classmethod
    def fit(cls, y: np.ndarray) -> MinMaxScaler1D:
        """lo = min(y), scale = max(y) − min(y) (1 if constant)."""
        y = np.asarray(y, dtype=np.float64)
        lo, hi = float(np.nanmin(y)), float(np.nanmax(y))
        return cls(lo, (hi - lo) if hi > lo else 1.0)

    def transform(self, y: np.ndarray) -> np.ndarray:
        """Normalise."""
        return (np.asarray(y, dtype=np.float64) - self.lo) / self.scale

    def inverse(self, yn: np.ndarray) -> np.ndarray:
        """Undo the normalisation."""
        return np.asarray(yn, dtype=np.float64) * self.scale + self.lo
