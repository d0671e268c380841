"""Architecture → curve-parameter predictor (Gallego-Feliciano et al. §5, Table 3/4).

One row per fitted layer: architecture (layer ℓ, L, d_model, heads H, d_ff, …) and the fitted (A, λ, γ, t₀, K).
Features (Table 4): ℓ/L, (ℓ/L)², (ℓ/L)³, √(ℓ/L), H/d ("attention density"), d_ff/d, d/L, H/L, log d, ℓ·L.
Targets: log1p for A, λ, γ, t₀ and Yeo-Johnson for K (log1p falls back to Yeo-Johnson when a value is ≤ −1).
Each target: StandardScaler → {Ridge, Lasso, RandomForest, GradientBoosting}, 80/20 split, 5-fold CV R² on the
training part, test R²/MAE/RMSE, and permutation importance of the best-CV model on the test part.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from interp.errors import ConfigError

FEATURES = ("rel_depth", "rel_depth2", "rel_depth3", "sqrt_rel_depth", "heads_per_d", "dff_per_d", "d_per_L",
            "heads_per_L", "log_d", "layer_x_L")
TARGETS = ("A", "lam", "gamma", "t0", "K")
DEFAULT_TRANSFORMS = {"A": "log1p", "lam": "log1p", "gamma": "log1p", "t0": "log1p", "K": "yeo-johnson"}
MODELS = ("ridge", "lasso", "rf", "gb")


def arch_features(layer: int, n_layers: int, d_model: int, n_heads: int, d_ff: int) -> dict[str, float]:
    """Table 4 features of layer `layer` (1-based, ℓ ∈ 1..L) of an architecture."""
    if not (1 <= layer <= n_layers) or min(d_model, n_heads, d_ff) <= 0:
        raise ConfigError(f"bad architecture row: layer {layer} of {n_layers}, d {d_model}, H {n_heads}, "
                          f"d_ff {d_ff}", hint="layers are 1-based and sizes positive")
    r = layer / n_layers
    return {"rel_depth": r, "rel_depth2": r**2, "rel_depth3": r**3, "sqrt_rel_depth": math.sqrt(r),
            "heads_per_d": n_heads / d_model, "dff_per_d": d_ff / d_model, "d_per_L": d_model / n_layers,
            "heads_per_L": n_heads / n_layers, "log_d": math.log(d_model), "layer_x_L": float(layer * n_layers)}


def load_param_table(path: str | Path) -> list[dict]:
    """A user table of fitted parameters (.json list of rows or .csv with a header) with architecture columns
    layer (1-based), n_layers, d_model, n_heads, d_ff and any of A, lam, gamma, t0, K."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"parameter table not found: {p}", hint="pass a .json or .csv file")
    if p.suffix == ".json":
        rows = json.loads(p.read_text())
    elif p.suffix == ".csv":
        with p.open() as f:
            rows = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]
    else:
        raise ConfigError(f"unsupported table format {p.suffix}", hint="use .json or .csv")
    need = {"layer", "n_layers", "d_model", "n_heads", "d_ff"}
    if not isinstance(rows, list) or not rows or not need <= set(rows[0]):
        raise ConfigError(f"{p} must be a non-empty list of rows with columns {sorted(need)}",
                          hint="one row per fitted layer")
    return rows


def feature_matrix(rows: list[dict]) -> np.ndarray:
    """[n_rows, len(FEATURES)] float64 from architecture columns."""
    return np.array([[arch_features(int(r["layer"]), int(r["n_layers"]), int(r["d_model"]), int(r["n_heads"]),
                                    int(r["d_ff"]))[f] for f in FEATURES] for r in rows], dtype=np.float64)


def _transform(y_train: np.ndarray, y_test: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray, str]:
    """The target transform (log1p, Yeo-Johnson for targets that can be <= -1, or none), with Yeo-Johnson's power
    fitted on the training split only so that no test value shapes it."""
    if kind == "log1p" and np.all(y_train > -1) and np.all(y_test > -1):
        return np.log1p(y_train), np.log1p(y_test), "log1p"
    if kind in ("log1p", "yeo-johnson"):
        from sklearn.preprocessing import PowerTransformer

        pt = PowerTransformer(method="yeo-johnson").fit(y_train[:, None])
        return pt.transform(y_train[:, None])[:, 0], pt.transform(y_test[:, None])[:, 0], "yeo-johnson"
    if kind == "none":
        return y_train, y_test, "none"
    raise ConfigError(f"unknown target transform {kind!r}", hint="use log1p, yeo-johnson or none")


def _make(name: str, seed: int):
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
    from sklearn.linear_model import Lasso, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    est = {"ridge": lambda: Ridge(alpha=1.0), "lasso": lambda: Lasso(alpha=0.01, max_iter=20000),
           "rf": lambda: RandomForestRegressor(n_estimators=200, random_state=seed, n_jobs=1),
           "gb": lambda: GradientBoostingRegressor(random_state=seed)}
    if name not in est:
        raise ConfigError(f"unknown predictor model {name!r}", hint=f"use some of {MODELS}")
    return make_pipeline(StandardScaler(), est[name]())


def fit_param_predictors(rows: list[dict], targets: tuple[str, ...] = TARGETS,
                         transforms: dict[str, str] | None = None, models: tuple[str, ...] = MODELS,
                         test_size: float = 0.2, cv: int = 5, seed: int = 0, n_repeats: int = 10) -> dict:
    """Per target and model: CV R² (train part), test R²/MAE/RMSE; permutation importance of the best-CV model."""
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
    from sklearn.model_selection import cross_val_score, train_test_split

    tf = {**DEFAULT_TRANSFORMS, **(transforms or {})}
    X = feature_matrix(rows)
    n = X.shape[0]
    if n < max(20, cv * 4):
        raise ConfigError(f"{n} fitted layers are too few for an 80/20 split with {cv}-fold CV",
                          hint="fit more suites/layers or pass a larger parameter table")
    out: dict = {"n_rows": n, "features": list(FEATURES), "targets": {}}
    for tgt in targets:
        y_raw = np.array([float(r.get(tgt, np.nan)) for r in rows], dtype=np.float64)
        ok = np.isfinite(y_raw)
        if ok.sum() < max(20, cv * 4):
            out["targets"][tgt] = {"skipped": f"only {int(ok.sum())} finite values"}
            continue
        Xtr, Xte, ytr, yte = train_test_split(X[ok], y_raw[ok], test_size=test_size, random_state=seed)
        ytr, yte, used = _transform(ytr, yte, tf.get(tgt, "none"))
        table, best, best_cv = {}, None, -np.inf
        for name in models:
            m = _make(name, seed)
            cv_r2 = float(np.mean(cross_val_score(m, Xtr, ytr, cv=min(cv, len(ytr)), scoring="r2")))
            m.fit(Xtr, ytr)
            pred = m.predict(Xte)
            table[name] = {"cv_r2": cv_r2, "test_r2": float(r2_score(yte, pred)),
                           "test_mae": float(mean_absolute_error(yte, pred)),
                           "test_rmse": float(math.sqrt(mean_squared_error(yte, pred)))}
            if cv_r2 > best_cv:
                best, best_cv = (name, m), cv_r2
        pi = permutation_importance(best[1], Xte, yte, n_repeats=n_repeats, random_state=seed, scoring="r2")
        order = np.argsort(-pi.importances_mean)
        out["targets"][tgt] = {
            "transform": used, "models": table, "best_model": best[0],
            "importance": {FEATURES[i]: float(pi.importances_mean[i]) for i in order},
            "ranking": [FEATURES[i] for i in order],
        }
    return out
