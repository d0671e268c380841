"""Streaming least squares and R²/FVU helpers against torch.linalg.lstsq and brute-force float64 formulas."""

from __future__ import annotations

import pytest
import torch

from interp.errors import ConfigError
from interp.stats.lstsq import StreamingLstsq, lstsq
from interp.stats.metrics import StreamingR2, fvu, normalized_mse, r2, r2_per_dim


def _data(n: int = 3000, d_in: int = 12, d_out: int = 5, offset: float = 50.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d_in, generator=g, dtype=torch.float64) * torch.linspace(0.5, 3, d_in, dtype=torch.float64)
    X = X + offset
    W = torch.randn(d_in, d_out, generator=g, dtype=torch.float64)
    Y = X @ W + 3.0 + 0.5 * torch.randn(n, d_out, generator=g, dtype=torch.float64)
    return X, Y


def _ref(X: torch.Tensor, Y: torch.Tensor, fit_intercept: bool) -> tuple[torch.Tensor, torch.Tensor]:
    A = torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype)], 1) if fit_intercept else X
    sol = torch.linalg.lstsq(A, Y, driver="gelsd").solution
    return (sol[:-1], sol[-1]) if fit_intercept else (sol, torch.zeros(Y.shape[1], dtype=X.dtype))


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_streaming_matches_lstsq(fit_intercept: bool) -> None:
    X, Y = _data(offset=5.0)
    acc = StreamingLstsq(X.shape[1], Y.shape[1], fit_intercept=fit_intercept)
    for s in range(0, X.shape[0], 257):  # uneven batches
        acc.update(X[s:s + 257], Y[s:s + 257])
    sol = acc.solve()
    W, b = _ref(X, Y, fit_intercept)
    assert torch.linalg.norm(sol.W - W) / torch.linalg.norm(W) < 1e-8
    if fit_intercept:
        assert torch.linalg.norm(sol.b - b) / torch.linalg.norm(b) < 1e-8
    pred = sol.predict(X)
    ref = X @ W + b
    assert torch.linalg.norm(pred - ref) / torch.linalg.norm(ref) < 1e-10


def test_large_offset_intercept_stable() -> None:
    X, Y = _data(offset=1e4)
    sol = lstsq(X, Y, batch_size=500)
    W, b = _ref(X - 1e4, Y, True)  # well-conditioned reference: same slopes, shifted intercept
    assert torch.linalg.norm(sol.W - W) / torch.linalg.norm(W) < 1e-8
    assert torch.allclose(sol.predict(X), (X - 1e4) @ W + b, rtol=1e-9, atol=1e-7)


def test_ridge_closed_form_and_rank_deficient() -> None:
    X, Y = _data(n=400, offset=0.0)
    lam = 7.0
    sol = lstsq(X, Y, fit_intercept=True, ridge=lam)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    W = torch.linalg.solve(Xc.T @ Xc + lam * torch.eye(X.shape[1], dtype=X.dtype), Xc.T @ Yc)
    assert torch.allclose(sol.W, W, rtol=1e-9, atol=1e-11)
    assert torch.allclose(sol.b, Y.mean(0) - X.mean(0) @ W, rtol=1e-9, atol=1e-9)
    Xd = torch.cat([X, X[:, :1]], 1)  # duplicated column: minimum-norm solution, predictions still exact
    sd = lstsq(Xd, Y, fit_intercept=False)
    Wr, _ = _ref(Xd, Y, False)
    assert torch.allclose(sd.predict(Xd), Xd @ Wr, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_merge_equals_single_pass(fit_intercept: bool) -> None:
    """Merging (what all_reduce does across ranks) re-centres the sums on the common means; a fit through the
    origin must still solve the uncentred problem (the float64 reference below)."""
    X, Y = _data()
    kw = {"fit_intercept": fit_intercept}
    a = StreamingLstsq(12, 5, **kw).update(X[:1000], Y[:1000])
    b = StreamingLstsq(12, 5, **kw).update(X[1000:], Y[1000:])
    whole = StreamingLstsq(12, 5, **kw).update(X, Y).solve()
    merged = a.merge(b).solve()
    W, _ = _ref(X, Y, fit_intercept)
    assert torch.allclose(merged.W, W.to(merged.W.dtype), rtol=1e-8, atol=1e-10)
    assert torch.allclose(merged.W, whole.W, rtol=1e-9, atol=1e-12)
    assert torch.allclose(merged.b, whole.b, rtol=1e-9, atol=1e-9)
    assert merged.n == X.shape[0]


def test_bad_shapes_raise() -> None:
    acc = StreamingLstsq(3, 2)
    with pytest.raises(ConfigError):
        acc.update(torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(ConfigError):
        acc.solve()
    with pytest.raises(ConfigError):
        StreamingLstsq(3, 2, ridge=-1)


def test_r2_conventions_and_fvu() -> None:
    g = torch.Generator().manual_seed(1)
    y = torch.randn(500, 4, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2, 3, 4]) + 10
    yhat = y + 0.3 * torch.randn(500, 4, generator=g, dtype=torch.float64)
    per = [1 - ((y[:, j] - yhat[:, j]) ** 2).sum() / ((y[:, j] - y[:, j].mean()) ** 2).sum() for j in range(4)]
    assert torch.allclose(r2_per_dim(y, yhat), torch.stack(per))
    assert abs(r2(y, yhat) - float(torch.stack(per).mean())) < 1e-12
    flat = 1 - ((y - yhat) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert abs(r2(y, yhat, "flat") - float(flat)) < 1e-12
    f = ((y - yhat) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()
    assert abs(fvu(y, yhat) - float(f)) < 1e-12 and abs(r2(y, yhat, "pooled") - (1 - float(f))) < 1e-12
    nm = (((yhat - y) ** 2).sum(1) / (y ** 2).sum(1)).mean()
    assert abs(normalized_mse(y, yhat) - float(nm)) < 1e-12
    acc = StreamingR2(4)
    for s in range(0, 500, 77):
        acc.update(y[s:s + 77], yhat[s:s + 77])
    for conv in ("mean_over_dims", "flat", "pooled"):
        assert abs(acc.r2(conv) - r2(y, yhat, conv)) < 1e-10
    assert abs(acc.fvu() - fvu(y, yhat)) < 1e-10
    with pytest.raises(ConfigError):
        r2(y, yhat, "bogus")


def test_metrics_refuse_nan_and_mismatched_shapes() -> None:
    """A NaN used to drop its column out of the mean R² silently, and fvu broadcast [1, d] against [n, d]."""
    from interp.errors import ConfigError
    from interp.stats.curvefit import r2_score
    from interp.stats.metrics import StreamingR2, fvu, normalized_mse, r2

    g = torch.Generator().manual_seed(0)
    y = torch.randn(50, 4, generator=g)
    bad = y.clone()
    bad[3, 1] = float("nan")
    for call in (lambda: r2(bad, y), lambda: r2(y, bad, "flat"), lambda: fvu(y, bad),
                 lambda: StreamingR2(4).update(bad, y), lambda: fvu(y, y[:1]), lambda: normalized_mse(y, y[:1]),
                 lambda: r2_score([5.0], [1.0, 1.0]), lambda: StreamingR2(4).r2("flat")):
        with pytest.raises(ConfigError):
            call()
    const = torch.ones(20, 3)  # no variance: NaN under every convention, as a constant column's own R²
    for value in (r2(const, const * 0.5, "flat"), r2(const, const * 0.5, "pooled"), fvu(const, const * 0.5),
                  StreamingR2(3).update(const, const * 0.5).r2("flat"), StreamingR2(3).update(const, const).fvu()):
        assert value != value

