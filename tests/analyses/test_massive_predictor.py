"""The architecture → parameter predictor recovers a planted relation (K = 2 − 3·H/d + noise on 188 rows)."""

import math

import numpy as np
import pytest

from analyses.massive.predictor import FEATURES, arch_features, fit_param_predictors, load_param_table
from interp.errors import ConfigError


def _rows(n=188, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    while len(rows) < n:
        d = int(rng.choice([64, 96, 128, 192, 256, 384, 512]))  # ~40 architectures of 2–8 layers
        H = int(rng.integers(1, 33))
        L = int(rng.integers(2, 9))
        for layer in range(1, L + 1):
            if len(rows) == n:
                break
            rows.append({"layer": layer, "n_layers": L, "d_model": d, "n_heads": H, "d_ff": 4 * d})
    for r in rows:  # H/d spans 1/512 … 1/2
        r["K"] = 2 - 3 * (r["n_heads"] / r["d_model"]) + rng.normal(0, 0.05)
    return rows


def test_massive_arch_features_formulas():
    f = arch_features(3, 6, 512, 8, 2048)
    assert f["rel_depth"] == 0.5 and f["rel_depth3"] == 0.125 and f["sqrt_rel_depth"] == math.sqrt(0.5)
    assert f["heads_per_d"] == 8 / 512 and f["dff_per_d"] == 4 and f["d_per_L"] == 512 / 6
    assert f["heads_per_L"] == 8 / 6 and f["log_d"] == math.log(512) and f["layer_x_L"] == 18
    assert list(f) == list(FEATURES)
    with pytest.raises(ConfigError):
        arch_features(0, 6, 512, 8, 2048)


def test_massive_predictor_recovers_planted_relation(tmp_path):
    rows = _rows()
    out = fit_param_predictors(rows, targets=("K",), models=("rf", "gb"), n_repeats=5)
    k = out["targets"]["K"]
    assert out["n_rows"] == 188 and k["transform"] == "yeo-johnson"
    assert max(k["models"][m]["test_r2"] for m in ("rf", "gb")) > 0.8
    assert k["ranking"][0] == "heads_per_d"
    # a user-supplied table gives the same answer
    import json

    path = tmp_path / "params.json"
    path.write_text(json.dumps(rows))
    again = fit_param_predictors(load_param_table(path), targets=("K",), models=("rf",), n_repeats=5)
    assert again["targets"]["K"]["models"]["rf"] == k["models"]["rf"]
    with pytest.raises(ConfigError):
        fit_param_predictors(rows[:5], targets=("K",))


def test_massive_predictor_user_table_through_run_config(tmp_path):
    import json

    from analyses.massive import Config
    from analyses.massive.studies import _predictor

    path = tmp_path / "params.json"
    path.write_text(json.dumps(_rows(60, seed=2)))
    out = _predictor(Config(predictor_table=str(path)), [])
    assert out["n_rows"] == 60 and "K" in out["targets"] and out["targets"]["A"] == {"skipped": "only 0 finite values"}
    assert _predictor(Config(), [])["skipped"].startswith("0 fitted layers")


def test_massive_target_transform_is_fitted_on_the_training_split_only():
    """Yeo-Johnson's power comes from the training targets alone: test values (here an outlier) never shape it."""
    from sklearn.preprocessing import PowerTransformer

    from analyses.massive.predictor import _transform

    rng = np.random.default_rng(0)
    ytr, yte = rng.normal(size=60) * 3 - 2, rng.normal(size=15) * 3 - 2
    a_tr, a_te, kind = _transform(ytr, yte, "log1p")               # values <= -1: log1p falls back to Yeo-Johnson
    b_tr, b_te, _ = _transform(ytr, np.append(yte, 1e4), "yeo-johnson")
    assert kind == "yeo-johnson"
    pt = PowerTransformer(method="yeo-johnson").fit(ytr[:, None])
    np.testing.assert_allclose(a_tr, pt.transform(ytr[:, None])[:, 0], rtol=1e-12)
    np.testing.assert_allclose(a_te, pt.transform(yte[:, None])[:, 0], rtol=1e-12)
    np.testing.assert_allclose(b_tr, a_tr, rtol=0, atol=0)
    np.testing.assert_allclose(b_te[:-1], a_te, rtol=0, atol=0)
    pos = np.abs(ytr)
    c_tr, c_te, kind = _transform(pos, np.abs(yte), "log1p")
    assert kind == "log1p" and np.array_equal(c_tr, np.log1p(pos)) and np.array_equal(c_te, np.log1p(np.abs(yte)))
