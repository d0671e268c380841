"""Step-response alternatives the paper compares the five-parameter curve against by R² and AIC (Eqs. 15–18).

First order:  y₀ + G·(1 − e^(−t/τ))
Second order (natural frequency ω, damping ζ), the best of
  under-damped (0 < ζ < 1): y₀ + G·(1 − e^(−ζωt)·(cos ω_d t + ζ/√(1−ζ²)·sin ω_d t)), ω_d = ω√(1−ζ²)
  critically damped:        y₀ + G·(1 − (1 + ωt)·e^(−ωt))
  over-damped (τ₁ ≠ τ₂):    y₀ + G·(1 − (τ₁e^(−t/τ₁) − τ₂e^(−t/τ₂))/(τ₁ − τ₂))
The paper's exact parametrisation is not printed; these are the textbook forms. Fitted in normalised space
(t/t_max, min-max y) from a grid of starts whose linear parameters (y₀, G) are at their least-squares values.
"""

from __future__ import annotations

import numpy as np

from interp.stats.curvefit import MinMaxScaler1D, aic_gaussian, fit_curve, r2_score


def step1(t: np.ndarray, y0: float, G: float, tau: float) -> np.ndarray:
    """First-order step response."""
    return y0 + G * (1.0 - np.exp(-np.asarray(t, dtype=np.float64) / tau))


def step2_under(t: np.ndarray, y0: float, G: float, w: float, zeta: float) -> np.ndarray:
    """Under-damped second-order step response."""
    t = np.asarray(t, dtype=np.float64)
    wd = w * np.sqrt(max(1.0 - zeta**2, 1e-12))
    c = zeta / np.sqrt(max(1.0 - zeta**2, 1e-12))
    return y0 + G * (1.0 - np.exp(-zeta * w * t) * (np.cos(wd * t) + c * np.sin(wd * t)))


def step2_critical(t: np.ndarray, y0: float, G: float, w: float) -> np.ndarray:
    """Critically damped second-order step response."""
    t = np.asarray(t, dtype=np.float64)
    return y0 + G * (1.0 - (1.0 + w * t) * np.exp(-w * t))


def step2_over(t: np.ndarray, y0: float, G: float, tau1: float, tau2: float) -> np.ndarray:
    """Over-damped second-order step response (two real time constants)."""
    t = np.asarray(t, dtype=np.float64)
    if abs(tau1 - tau2) < 1e-9 * max(tau1, tau2):
        tau2 = tau1 * (1 + 1e-6)
    return y0 + G * (1.0 - (tau1 * np.exp(-t / tau1) - tau2 * np.exp(-t / tau2)) / (tau1 - tau2))


def _linear_yg(f, tn: np.ndarray, yn: np.ndarray, nonlin: tuple[float, ...]) -> list[float]:
    """y₀, G by least squares for fixed nonlinear parameters, followed by those parameters."""
    shape = f(tn, 0.0, 1.0, *nonlin)
    X = np.stack([np.ones_like(tn), shape], axis=1)
    coef, *_ = np.linalg.lstsq(X, yn, rcond=None)
    return [float(coef[0]), float(coef[1]), *nonlin]


_TAUS = (1e-3, 1e-2, 0.05, 0.2, 1.0)
_OMEGAS = (1.0, 5.0, 20.0, 100.0, 500.0)


def fit_step_responses(t: np.ndarray, y: np.ndarray) -> dict[str, dict[str, float]]:
    """R², AIC and parameter count of the first-order and (best) second-order step responses on one series."""
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    T = float(t.max()) if t.max() > 0 else 1.0
    sc = MinMaxScaler1D.fit(y)
    tn, yn = t / T, sc.transform(y)
    inf = np.inf
    cands = {
        "step1": (step1, [_linear_yg(step1, tn, yn, (tau,)) for tau in _TAUS],
                  ([-inf, -inf, 1e-6], [inf, inf, 1e3])),
        "step2_under": (step2_under, [_linear_yg(step2_under, tn, yn, (w, z)) for w in _OMEGAS
                                      for z in (0.1, 0.5, 0.9)],
                        ([-inf, -inf, 1e-3, 1e-4], [inf, inf, 1e4, 0.9999])),
        "step2_critical": (step2_critical, [_linear_yg(step2_critical, tn, yn, (w,)) for w in _OMEGAS],
                           ([-inf, -inf, 1e-3], [inf, inf, 1e4])),
        "step2_over": (step2_over, [_linear_yg(step2_over, tn, yn, (a, b)) for a in _TAUS for b in _TAUS if a > b],
                       ([-inf, -inf, 1e-6, 1e-6], [inf, inf, 1e3, 1e3])),
    }
    out: dict[str, dict[str, float]] = {}
    for name, (f, starts, bounds) in cands.items():
        fit = fit_curve(f, tn, yn, starts, bounds=bounds, max_nfev=400)
        yhat = sc.inverse(f(tn, *fit.params)) if np.all(np.isfinite(fit.params)) else np.full_like(y, np.nan)
        sse = float(np.nansum((y - yhat) ** 2))
        out[name] = {"r2": r2_score(y, yhat), "aic": aic_gaussian(sse, y.size, fit.k), "k": fit.k}
    second = min(("step2_under", "step2_critical", "step2_over"),
                 key=lambda n: out[n]["aic"] if np.isfinite(out[n]["aic"]) else np.inf)
    out["step2"] = {**out[second], "variant": second}
    return out
