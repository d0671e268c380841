"""The activation ratio against training data (Sparsing Law §5.1, Table 2), D = tokens seen in units the caller
chooses (the paper: 1e9; here scaled so that D is O(1–1000)).

    ReLU, Eq. 4 (logspace power law, decreasing):   A(D) = exp(−c·D^α + b) + A0
    SiLU, Eq. 5 (convergent power law, increasing): A(D) = A0 − c·D^(−α)
Fits are bounded (c, α > 0; A0 ∈ [0, 1]): unbounded fits accept the wrong form (spec, Pitfalls). `fit_trends`
fits both, and names a form only when its R² clears `min_r2` and beats the other's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from interp.stats.curvefit import fit_curve


def relu_law(d: np.ndarray, c: float, alpha: float, b: float, a0: float) -> np.ndarray:
    return np.exp(-c * np.power(d, alpha) + b) + a0


def silu_law(d: np.ndarray, c: float, alpha: float, a0: float) -> np.ndarray:
    return a0 - c * np.power(d, -alpha)


@dataclass
class TrendFit:
    form: str  # "relu" (Eq. 4) or "silu" (Eq. 5)
    params: dict[str, float]
    r2: float
    aic: float

    def predict(self, d: np.ndarray) -> np.ndarray:
        f = relu_law if self.form == "relu" else silu_law
        return f(np.asarray(d, dtype=np.float64), **self.params)


def _r2(y: np.ndarray, yhat: np.ndarray) -> float:
    ss = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - yhat) ** 2).sum()) / ss if ss > 0 else float("nan")


def fit_form(d: np.ndarray, a: np.ndarray, form: str) -> TrendFit:
    """One bounded multi-start fit of Eq. 4 ("relu") or Eq. 5 ("silu")."""
    d, a = np.asarray(d, dtype=np.float64), np.asarray(a, dtype=np.float64)
    if form == "relu":
        starts = [(c, al, b, a0) for c in (0.01, 0.1, 1.0, 3.0) for al in (0.1, 0.5, 1.0, 1.5)
                  for b in (-3.0, -1.0, 0.0) for a0 in (float(a.min()) * 0.9,)]
        bounds = ([1e-9, 1e-6, -20.0, 0.0], [1e3, 5.0, 5.0, 1.0])
        names = ("c", "alpha", "b", "a0")
        f = relu_law
    elif form == "silu":
        starts = [(c, al, a0) for c in (0.01, 0.1, 0.5, 1.0) for al in (0.1, 0.5, 1.0, 2.0)
                  for a0 in (float(a.max()), min(1.0, float(a.max()) * 1.1))]
        bounds = ([1e-9, 1e-6, 0.0], [1e3, 5.0, 1.0])
        names = ("c", "alpha", "a0")
        f = silu_law
    else:
        raise ValueError(f"form must be relu or silu, got {form!r}")
    res = fit_curve(f, d, a, starts, bounds=bounds)
    params = dict(zip(names, (float(v) for v in res.params)))
    yhat = f(d, **params)
    n, k = len(a), len(names)
    sse = float(((a - yhat) ** 2).sum())
    aic = n * np.log(max(sse, 1e-300) / n) + 2 * k
    return TrendFit(form, params, _r2(a, yhat), float(aic))


@dataclass
class Trends:
    relu: TrendFit
    silu: TrendFit
    winner: str | None  # the form that fits (R² ≥ min_r2 and better than the other), None when neither does

    @property
    def best(self) -> TrendFit | None:
        return None if self.winner is None else getattr(self, self.winner)


def fit_trends(d: np.ndarray, a: np.ndarray, min_r2: float = 0.9) -> Trends:
    """Both forms; the winner by R² among those that clear `min_r2` (none: neither form describes the data)."""
    relu, silu = fit_form(d, a, "relu"), fit_form(d, a, "silu")
    ok = [f for f in (relu, silu) if np.isfinite(f.r2) and f.r2 >= min_r2]
    winner = max(ok, key=lambda f: f.r2).form if ok else None
    return Trends(relu, silu, winner)
