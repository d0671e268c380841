"""The five-parameter curve, its reparametrisation, the Lambert-W peak and the robustness of the default fit."""

import numpy as np
import pytest

from analyses.massive.curve import (
    fit_ma_curve,
    fit_ma_curve_paper,
    ma_curve,
    ma_curve_jac,
    ma_curve_reparam,
    ma_curve_reparam_jac,
    params_from_reparam,
    peak_observable,
    reparam_from_params,
    t_peak,
)
from interp.errors import ConfigError

TRUE = dict(A=3000.0, lam=0.5, gamma=1e-3, t0=1.0, K=400.0)
# Pythia-like step grid: 0, 1, 2, 4, …, 512, then 1000, 5000, …, 141000 (47 points)
STEPS = np.array([0] + [2**i for i in range(10)] + list(range(1000, 142000, 4000)), dtype=np.float64)


def _noisy(y, seed):
    return y * (1 + 0.02 * np.random.default_rng(seed).standard_normal(y.size))


def test_massive_t_peak_matches_numeric_argmax():
    tp = t_peak(0.5, 1e-3, 1.0)
    assert tp == pytest.approx(1345.8, abs=0.5)
    grid = np.arange(0, 5000, 0.07)
    assert grid[np.argmax(ma_curve(grid, **TRUE))] == pytest.approx(tp, abs=0.07)
    assert peak_observable(0.5, 1.0) and not peak_observable(0.5, 10.0)  # e^W(2) ≈ 2.35
    assert t_peak(0.0, 1e-3, 1.0) == float("inf")
    assert ma_curve(np.array([1e9]), **TRUE)[0] == pytest.approx(400.0, abs=1e-9)  # f → K


def test_massive_reparam_is_the_same_curve_and_jacobians_match_finite_differences():
    t = np.linspace(0, 20000, 101)
    rp = reparam_from_params(**TRUE)
    np.testing.assert_allclose(ma_curve_reparam(t, *rp), ma_curve(t, **TRUE), rtol=1e-10)
    np.testing.assert_allclose(params_from_reparam(*rp), list(TRUE.values()), rtol=1e-10)
    for f, jac, p in ((ma_curve, ma_curve_jac, np.array(list(TRUE.values()))), (ma_curve_reparam,
                                                                                 ma_curve_reparam_jac,
                                                                                 np.array(rp))):
        h = 1e-6 * np.maximum(np.abs(p), 1e-3)
        num = np.stack([(f(t, *(p + e)) - f(t, *(p - e))) / (2 * e.sum()) for e in np.diag(h)], axis=1)
        np.testing.assert_allclose(jac(t, *p), num, rtol=1e-4, atol=1e-6 * np.abs(num).max())


def test_massive_fit_early_peak_robust_and_paper_single_start_fails():
    y = ma_curve(STEPS, **TRUE)
    good, paper_fail = [], 0
    for seed in range(5):
        yn = _noisy(y, seed)
        fit = fit_ma_curve(STEPS, yn)
        good.append(fit.r2 >= 0.99 and abs(fit.t_peak / 1345.8 - 1) < 0.05 and fit.regime == "early peak")
        assert fit.model == "full" and fit.params["K"] == pytest.approx(400, rel=0.02)
        paper = fit_ma_curve_paper(STEPS, yn)
        paper_fail += paper.r2 < 0.5
    # seed 0 passes; over 40 noise draws 38 pass: the misses fit the noisy points better than the true curve
    assert good[0] and sum(good) >= 4
    assert paper_fail >= 4  # the paper's single start converges to a flat line (R² ≈ 0)


def test_massive_fit_log_increase_reports_lambda_zero():
    y = ma_curve(STEPS, A=300.0, lam=0.0, gamma=1e-3, t0=1.0, K=50.0)
    for seed in range(3):
        fit = fit_ma_curve(STEPS, _noisy(y, 10 + seed))
        assert fit.r2 >= 0.99 and fit.params["lam"] < 0.05
        assert fit.regime == "log increase" and fit.t_peak == float("inf")
        assert np.sqrt(np.mean((fit.predict(STEPS) / y - 1) ** 2)) < 0.02  # within the 2% noise


def test_massive_fit_rejects_short_series():
    with pytest.raises(ConfigError):
        fit_ma_curve(np.arange(4.0), np.arange(4.0))
    with pytest.raises(ConfigError, match="distinct steps"):  # used to divide by zero inside the fit
        fit_ma_curve(np.full(8, 5.0), np.arange(8.0))
    with pytest.raises(ConfigError, match="one length"):
        fit_ma_curve(np.arange(8.0), np.arange(7.0))
