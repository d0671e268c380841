"""The five-parameter trajectory model of massive activations (Gallego-Feliciano et al. 2025, Eqs. 9–14).

f(t) = A·e^(−λ·x_t)·log(x_t) + K,  x_t = γ·t + t₀                          (Eq. 9)
f(t) = e^(−β·t)·(A₁·log(t + τ₀) + A₂) + K, β = λγ, τ₀ = t₀/γ, A₁ = A·e^(−λt₀), A₂ = A₁·log γ   (Eq. 14)
t_peak = (e^(W(1/λ)) − t₀)/γ, observable iff e^(W(1/λ)) = 1/(λ·W(1/λ)) > t₀                 (Eqs. 11–13)

The default fit (`fit_ma_curve`) works in normalised space (t/t_max, min-max y) with the reparametrised form, a
multi-start grid over (β, τ₀) whose linear parameters (A₁, A₂, K) start at their least-squares values, trf with
the analytic Jacobian and β ≥ 0, and a likelihood-ratio test against the nested pure-log model (λ = 0), which is
kept (λ reported as 0) unless the full model is significantly better: with λ = 0 the five parameters are not
identifiable. `fit_ma_curve_paper` is the paper's single-start initialisation, kept for comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import lambertw

from interp.errors import ConfigError
from interp.stats.curvefit import (
    FitResult,
    MinMaxScaler1D,
    aic_gaussian,
    fit_curve,
    lr_statistic,
    r2_score,
)

PARAM_NAMES = ("A", "lam", "gamma", "t0", "K")
REPARAM_NAMES = ("A1", "beta", "tau0", "A2", "K")
LR_CRITICAL_2DOF_1PCT = 9.21  # χ²₂ 99% quantile: full model (β, A₂ free) vs pure log


# ----------------------------------------------------------------------------------------------- curves
def ma_curve(t: np.ndarray, A: float, lam: float, gamma: float, t0: float, K: float) -> np.ndarray:
    """Eq. 9: A·exp(−λ x)·log(x) + K with x = γt + t₀ (NaN where x ≤ 0)."""
    x = gamma * np.asarray(t, dtype=np.float64) + t0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return A * np.exp(-lam * x) * np.log(x) + K


def ma_curve_jac(t: np.ndarray, A: float, lam: float, gamma: float, t0: float, K: float) -> np.ndarray:
    """Analytic Jacobian of Eq. 9 w.r.t. (A, λ, γ, t₀, K): [n, 5]."""
    t = np.asarray(t, dtype=np.float64)
    x = gamma * t + t0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        e = np.exp(-lam * x)
        lg = np.log(x)
        dx = A * e * (1.0 / x - lam * lg)  # ∂f/∂x
        return np.stack([e * lg, -A * x * e * lg, dx * t, dx, np.ones_like(t)], axis=1)


def ma_curve_reparam(t: np.ndarray, A1: float, beta: float, tau0: float, A2: float, K: float) -> np.ndarray:
    """Eq. 14: exp(−βt)·(A₁ log(t + τ₀) + A₂) + K."""
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return np.exp(-beta * t) * (A1 * np.log(t + tau0) + A2) + K


def ma_curve_reparam_jac(t: np.ndarray, A1: float, beta: float, tau0: float, A2: float, K: float) -> np.ndarray:
    """Analytic Jacobian of Eq. 14 w.r.t. (A₁, β, τ₀, A₂, K): [n, 5]."""
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        e = np.exp(-beta * t)
        lg = np.log(t + tau0)
        return np.stack([e * lg, -t * e * (A1 * lg + A2), e * A1 / (t + tau0), e, np.ones_like(t)], axis=1)


def _log_curve(t: np.ndarray, A1: float, tau0: float, C: float) -> np.ndarray:
    """Pure-log model (λ = 0): A₁·log(t + τ₀) + C."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return A1 * np.log(np.asarray(t, dtype=np.float64) + tau0) + C


def _log_curve_jac(t: np.ndarray, A1: float, tau0: float, C: float) -> np.ndarray:
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([np.log(t + tau0), A1 / (t + tau0), np.ones_like(t)], axis=1)


# ----------------------------------------------------------------------------------------------- maps
def reparam_from_params(A: float, lam: float, gamma: float, t0: float, K: float) -> tuple[float, ...]:
    """(A, λ, γ, t₀, K) -> (A₁, β, τ₀, A₂, K) (Eq. 14)."""
    A1 = A * math.exp(-lam * t0)
    return A1, lam * gamma, t0 / gamma, A1 * math.log(gamma), K


def params_from_reparam(A1: float, beta: float, tau0: float, A2: float, K: float) -> tuple[float, ...]:
    """(A₁, β, τ₀, A₂, K) -> (A, λ, γ, t₀, K): γ = e^(A₂/A₁), λ = β/γ, t₀ = τ₀γ, A = A₁e^(λt₀)."""
    if A1 == 0:
        return 0.0, float("nan"), float("nan"), float("nan"), K
    with np.errstate(over="ignore"):
        gamma = float(np.exp(A2 / A1))
        lam = beta / gamma if gamma > 0 else float("nan")
        t0 = tau0 * gamma
        A = float(A1 * np.exp(lam * t0))
    return A, lam, gamma, t0, K


def t_peak(lam: float, gamma: float, t0: float) -> float:
    """Eq. 13: step of the maximum, (e^(W(1/λ)) − t₀)/γ (inf for λ = 0: a log curve never peaks)."""
    if not lam > 0:
        return float("inf")
    w = float(np.real(lambertw(1.0 / lam)))
    return (math.exp(w) - t0) / gamma


def peak_observable(lam: float, t0: float) -> bool:
    """Eq. 12 corrected: the peak lies at t > 0 iff 1/(λ·W(1/λ)) = e^(W(1/λ)) > t₀."""
    if not lam > 0:
        return False
    w = float(np.real(lambertw(1.0 / lam)))
    return 1.0 / (lam * w) > t0


# ----------------------------------------------------------------------------------------------- fits
@dataclass
class MACurveFit:
    """One layer's fitted trajectory: original and reparametrised parameters, R², AIC, t_peak, regime."""

    params: dict[str, float]
    reparam: dict[str, float]
    r2: float
    aic: float
    sse: float
    n: int
    t_peak: float
    peak_observable: bool
    regime: str  # "early peak" | "log increase"
    model: str  # "full" | "log"
    lr_stat: float
    n_starts: int
    extra: dict = field(default_factory=dict)

    def predict(self, t: np.ndarray) -> np.ndarray:
        """Fitted curve at steps t."""
        r = self.reparam
        return ma_curve_reparam(t, r["A1"], r["beta"], r["tau0"], r["A2"], r["K"])

    def to_dict(self) -> dict:
        """JSON-able."""
        return {k: getattr(self, k) for k in ("params", "reparam", "r2", "aic", "sse", "n", "t_peak",
                                              "peak_observable", "regime", "model", "lr_stat", "n_starts")}


BETA_GRID = (0.1, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
TAU_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def _linear_start(tn: np.ndarray, yn: np.ndarray, beta: float, tau: float) -> np.ndarray:
    """(A₁, β, τ₀, A₂, K) with A₁, A₂, K at their least-squares values for fixed β, τ₀ (variable projection)."""
    e = np.exp(-beta * tn)
    X = np.stack([e * np.log(tn + tau), e, np.ones_like(tn)], axis=1)
    coef, *_ = np.linalg.lstsq(X, yn, rcond=None)
    return np.array([coef[0], beta, tau, coef[1], coef[2]])


def _log_start(tn: np.ndarray, yn: np.ndarray, tau: float) -> np.ndarray:
    """(A₁, τ₀, C) of the pure-log model with A₁, C at their least-squares values for fixed τ₀."""
    X = np.stack([np.log(tn + tau), np.ones_like(tn)], axis=1)
    coef, *_ = np.linalg.lstsq(X, yn, rcond=None)
    return np.array([coef[0], tau, coef[1]])


def _paper_start(tn: np.ndarray, yn: np.ndarray) -> list[float]:
    """The paper's initial guess in normalised space: A = ptp y, λ = 1/std t, γ = 1/ptp t, t₀ = 1, K = min y + A/2."""
    A0 = float(np.ptp(yn))
    return [A0, 1.0 / float(np.std(tn)), 1.0 / float(np.ptp(tn)), 1.0, float(yn.min()) + A0 / 2]


def _check_series(t: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if t.shape != y.shape or t.ndim != 1:
        raise ConfigError(f"steps {t.shape} and values {y.shape} must be 1-D of one length",
                          hint="one value per checkpoint step")
    ok = np.isfinite(t) & np.isfinite(y)
    t, y = t[ok], y[ok]
    if t.size < 6:
        raise ConfigError(f"a five-parameter fit needs ≥ 6 finite checkpoints, got {t.size}",
                          hint="sweep more checkpoints (steps 0, 1, 2, 4, …)")
    if np.any(t < 0):
        raise ConfigError("training steps must be ≥ 0", hint="pass checkpoint step numbers")
    if np.unique(t).size < 6:
        raise ConfigError(f"a five-parameter fit needs ≥ 6 distinct steps, got {np.unique(t).size}",
                          hint="pass one value per checkpoint (average repeated steps first)")
    return t, y


def _denormalise(p: np.ndarray, T: float, sc: MinMaxScaler1D) -> dict[str, float]:
    """Map reparametrised parameters fitted on (t/T, (y−lo)/s) back to raw steps and raw y."""
    A1n, bn, taun, A2n, Kn = (float(v) for v in p)
    s = sc.scale
    return {"A1": s * A1n, "beta": bn / T, "tau0": taun * T, "A2": s * (A2n - A1n * math.log(T)),
            "K": sc.lo + s * Kn}


def fit_ma_curve(
    t: np.ndarray,
    y: np.ndarray,
    *,
    beta_grid: tuple[float, ...] = BETA_GRID,
    tau_grid: tuple[float, ...] = TAU_GRID,
    lr_critical: float = LR_CRITICAL_2DOF_1PCT,
    max_nfev: int = 2000,
) -> MACurveFit:
    """Robust default fit of Eq. 14 (normalised, multi-start, analytic Jacobian, β ≥ 0, pure-log nested test)."""
    t, y = _check_series(t, y)
    T = float(t.max()) if t.max() > 0 else 1.0
    sc = MinMaxScaler1D.fit(y)
    tn, yn = t / T, sc.transform(y)
    starts = [_linear_start(tn, yn, b, tau) for b in beta_grid for tau in tau_grid]
    starts.append(np.array(reparam_from_params(*_paper_start(tn, yn))))  # the paper's start is one more candidate
    lo, hi = [-np.inf, 0.0, 1e-12, -np.inf, -np.inf], [np.inf, 1e4, 1e3, np.inf, np.inf]
    full = fit_curve(ma_curve_reparam, tn, yn, starts, jac=ma_curve_reparam_jac, bounds=(lo, hi),
                     max_nfev=max_nfev)
    log_starts = [_log_start(tn, yn, tau) for tau in tau_grid]
    logf = fit_curve(_log_curve, tn, yn, log_starts, jac=_log_curve_jac,
                     bounds=([-np.inf, 1e-12, -np.inf], [np.inf, 1e3, np.inf]), max_nfev=max_nfev)
    lr = lr_statistic(logf.sse, full.sse, tn.size) if np.isfinite(full.sse) and np.isfinite(logf.sse) else np.inf
    use_full = not np.isfinite(logf.sse) or lr > lr_critical
    if use_full:
        rp = _denormalise(full.params, T, sc)
        params = dict(zip(PARAM_NAMES, params_from_reparam(**rp)))
        fit: FitResult = full
        model = "full"
    else:
        A1n, taun, Cn = (float(v) for v in logf.params)
        rp = _denormalise(np.array([A1n, 0.0, taun, Cn, 0.0]), T, sc)
        # λ = 0: A·log(γt + t₀) + K with the convention t₀ = 1 (γ = 1/τ₀; K absorbs A·log γ, no asymptote)
        gamma = 1.0 / rp["tau0"]
        params = {"A": rp["A1"], "lam": 0.0, "gamma": gamma, "t0": 1.0,
                  "K": rp["A2"] + rp["K"] - rp["A1"] * math.log(gamma)}
        rp = {**rp, "A2": rp["A2"] + rp["K"], "K": 0.0}
        fit = logf
        model = "log"
    tp = t_peak(params["lam"], params["gamma"], params["t0"]) if model == "full" else float("inf")
    # an early peak is an interior maximum: A > 0 (with A < 0 the stationary point is a dip, not a peak)
    obs = model == "full" and params["A"] > 0 and peak_observable(params["lam"], params["t0"]) and tp <= T
    yhat = ma_curve_reparam(t, rp["A1"], rp["beta"], rp["tau0"], rp["A2"], rp["K"])
    sse = float(np.sum((y - yhat) ** 2))
    return MACurveFit(
        params=params, reparam=rp, r2=r2_score(y, yhat), aic=aic_gaussian(sse, t.size, fit.k), sse=sse,
        n=int(t.size), t_peak=tp, peak_observable=bool(obs), regime="early peak" if obs else "log increase",
        model=model, lr_stat=float(lr), n_starts=full.n_starts + logf.n_starts,
        extra={"r2_full": full.r2, "r2_log": logf.r2},
    )


def fit_ma_curve_paper(t: np.ndarray, y: np.ndarray, max_nfev: int = 20000) -> MACurveFit:
    """The paper's single start on Eq. 9 in normalised space: A = ptp y, K = min y + A/2, λ = 1/std t, γ = 1/ptp t,
    t₀ = 1; trf, λ ≥ 0, γ, t₀ ≥ 1e-9. Known to stop on a flat line for early-peak data; for comparison only."""
    t, y = _check_series(t, y)
    T = float(t.max()) if t.max() > 0 else 1.0
    sc = MinMaxScaler1D.fit(y)
    tn, yn = t / T, sc.transform(y)
    p0 = _paper_start(tn, yn)
    fit = fit_curve(ma_curve, tn, yn, [p0], jac=ma_curve_jac,
                    bounds=([-np.inf, 0.0, 1e-9, 1e-9, -np.inf], [np.inf] * 5), max_nfev=max_nfev)
    A, lam, g, t0, K = (float(v) for v in fit.params)
    params = {"A": sc.scale * A, "lam": lam, "gamma": g / T, "t0": t0, "K": sc.lo + sc.scale * K}
    yhat = ma_curve(t, **params)
    tp = t_peak(lam, params["gamma"], t0) if lam > 0 else float("inf")
    obs = lam > 0 and A > 0 and peak_observable(lam, t0) and tp <= T
    rp = dict(zip(REPARAM_NAMES, reparam_from_params(**params))) if g > 0 else {}
    sse = float(np.sum((y - yhat) ** 2))
    return MACurveFit(params=params, reparam=rp, r2=r2_score(y, yhat), aic=aic_gaussian(sse, t.size, 5),
                      sse=sse, n=int(t.size), t_peak=tp, peak_observable=bool(obs),
                      regime="early peak" if obs else "log increase", model="paper", lr_stat=float("nan"),
                      n_starts=1)
