"""Scaling with SAE width: the saturating power law FVU ≈ c + a·W^(−m) (§3.2), fitted robustly.

The reference fits |c| + |a|·W^(−|m|) with Adam from a random start; here scipy `least_squares` with bounds
c, a, m ≥ 0, multi-start over m, on widths rescaled by their geometric mean (a = a'·W0^m maps back).
"""

from __future__ import annotations

import warnings

import numpy as np

from interp.errors import ConfigError


def power_law(w: np.ndarray, c: float, a: float, m: float) -> np.ndarray:
    """c + a·w^(−m)."""
    return c + a * np.power(np.asarray(w, dtype=np.float64), -m)


def fit_saturating_power_law(widths: np.ndarray, values: np.ndarray,
                             m_starts: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 2.0)
                             ) -> dict[str, float]:
    """Best multi-start fit of values ≈ c + a·W^(−m) with c, a, m ≥ 0; returns c, a, m, sse, r2 (float64)."""
    from scipy.optimize import least_squares

    w = np.asarray(widths, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(w) & np.isfinite(y) & (w > 0)
    w, y = w[ok], y[ok]
    if w.size < 3:
        raise ConfigError(f"{w.size} finite points cannot fit 3 parameters", hint="use at least 3 SAE widths")
    w0 = float(np.exp(np.log(w).mean()))
    u = w / w0
    scale = float(np.abs(y).max()) or 1.0
    yn = y / scale
    best = None
    for m0 in m_starts:
        for c_frac in (0.0, 0.5, 0.9):
            c0 = c_frac * yn.min()
            a0 = max(float(np.mean((yn - c0) * u ** m0)), 1e-6)

            def resid(p: np.ndarray) -> np.ndarray:
                return p[0] + p[1] * np.power(u, -p[2]) - yn

            def jac(p: np.ndarray) -> np.ndarray:
                um = np.power(u, -p[2])
                return np.stack([np.ones_like(u), um, -p[1] * um * np.log(u)], 1)

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sol = least_squares(resid, np.array([c0 + 1e-9, a0, m0]), jac=jac,
                                    bounds=([0, 0, 0], [np.inf, np.inf, 10]), xtol=1e-15, ftol=1e-15,
                                    gtol=1e-15, max_nfev=5000)
            sse = float(np.sum(sol.fun ** 2))
            if best is None or sse < best[0]:
                best = (sse, sol.x)
    sse, (cn, an, m) = best
    c, a = cn * scale, an * scale * w0 ** m
    yhat = power_law(w, c, a, m)
    sst = float(np.sum((y - y.mean()) ** 2))
    return {"c": float(c), "a": float(a), "m": float(m), "sse": float(np.sum((y - yhat) ** 2)),
            "r2": float(1 - np.sum((y - yhat) ** 2) / sst) if sst > 0 else float("nan")}
