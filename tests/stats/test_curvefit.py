"""Multi-start curve fitting: planted parameters, analytic vs finite-difference Jacobians, R²/AIC formulas."""

import math

import numpy as np
import pytest

from interp.errors import ConfigError
from interp.stats.curvefit import (
    MinMaxScaler1D,
    aic_gaussian,
    fit_curve,
    lr_statistic,
    r2_score,
    start_grid,
)


def _sine(x, a, w, c):
    return a * np.sin(w * x) + c


def _sine_jac(x, a, w, c):
    return np.stack([np.sin(w * x), a * x * np.cos(w * x), np.ones_like(x)], axis=1)


def test_curvefit_r2_aic_lr_formulas():
    rng = np.random.default_rng(0)
    y, yhat = rng.normal(size=50), rng.normal(size=50)
    from sklearn.metrics import r2_score as sk_r2

    assert r2_score(y, yhat) == pytest.approx(sk_r2(y, yhat), rel=1e-12)
    sse = float(np.sum((y - yhat) ** 2))
    assert aic_gaussian(sse, 50, 3) == pytest.approx(50 * math.log(sse / 50) + 6)
    assert lr_statistic(2.0, 1.0, 10) == pytest.approx(10 * math.log(2.0))
    assert math.isnan(r2_score(np.ones(5), np.zeros(5)))


def test_curvefit_multistart_escapes_local_minimum_single_start_does_not():
    x = np.linspace(0, 10, 200)
    y = _sine(x, 2.0, 3.0, 0.5)
    bad = [(1.0, 0.5, 0.0)]  # frequency far off: a local minimum
    single = fit_curve(_sine, x, y, bad, jac=_sine_jac, screen_nfev=None)
    multi = fit_curve(_sine, x, y, bad + [(1.0, w, 0.0) for w in np.linspace(0.5, 5, 10)], jac=_sine_jac)
    assert single.r2 < 0.5
    assert multi.r2 > 0.999999
    np.testing.assert_allclose(multi.params, [2.0, 3.0, 0.5], rtol=1e-6)
    assert multi.n_starts == 11


def test_curvefit_analytic_and_numeric_jacobian_agree_and_recover_truth():
    rng = np.random.default_rng(1)
    x = np.linspace(0, 5, 80)

    def f(x, a, k, c):
        return a * np.exp(-k * x) + c

    def jac(x, a, k, c):
        e = np.exp(-k * x)
        return np.stack([e, -a * x * e, np.ones_like(x)], axis=1)

    y = f(x, 3.0, 0.7, -1.0) + 0.01 * rng.normal(size=x.size)
    starts = [(1.0, k, 0.0) for k in (0.1, 1.0, 10.0)]
    fa = fit_curve(f, x, y, starts, jac=jac, bounds=([-10, 0, -10], [10, 10, 10]))
    fn = fit_curve(f, x, y, starts, bounds=([-10, 0, -10], [10, 10, 10]))
    np.testing.assert_allclose(fa.params, fn.params, rtol=1e-5)
    np.testing.assert_allclose(fa.params, [3.0, 0.7, -1.0], atol=0.02)
    # the analytic Jacobian equals central differences
    p = np.array([3.0, 0.7, -1.0])
    num = np.stack([(f(x, *(p + h)) - f(x, *(p - h))) / 2e-6 for h in np.eye(3) * 1e-6], axis=1)
    np.testing.assert_allclose(jac(x, *p), num, rtol=1e-5, atol=1e-7)


def test_curvefit_scaler_and_grid_and_errors():
    sc = MinMaxScaler1D.fit(np.array([2.0, 4.0, 10.0]))
    np.testing.assert_allclose(sc.transform([2.0, 10.0]), [0.0, 1.0])
    np.testing.assert_allclose(sc.inverse(sc.transform([3.3])), [3.3])
    assert len(start_grid(a=[1, 2], b=[3, 4, 5])) == 6
    with pytest.raises(ConfigError):
        fit_curve(_sine, np.arange(2.0), np.arange(2.0), [(1, 1, 1)])
    with pytest.raises(ConfigError):
        fit_curve(_sine, np.arange(5.0), np.arange(4.0), [(1, 1, 1)])
