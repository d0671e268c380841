"""Coupling vs regression slope (isotropic and anisotropic Gaussians), baselines, separation metrics, debias hook."""

from __future__ import annotations

import pytest
import torch

from analyses.obsprop.method import cosine, cosine_matrix, coupling
from analyses.obsprop.scores import (
    best_fit,
    feature_scores,
    gaussian_slope,
    linear_probe,
    mean_difference,
    projection_hook,
    separation,
)

torch.set_num_threads(1)


def test_coupling_equals_isotropic_slope_and_fails_anisotropic():
    """x ~ N(0, I_128), 1e6 samples: OLS slope of x·y2 on x·y1 == C(y1, y2) ± 0.005; x = A z breaks it,
    and the covariance-aware coupling y1ᵀΣy2 / y1ᵀΣy1 restores it."""
    g = torch.Generator().manual_seed(0)
    d = 128
    y1 = torch.randn(d, generator=g, dtype=torch.float64)
    y2 = 0.7 * y1 + torch.randn(d, generator=g, dtype=torch.float64)
    c = coupling(y1, y2)
    slope = gaussian_slope(y1, y2, 1_000_000, seed=1)
    assert abs(slope - c) < 0.005, (slope, c)
    # anisotropic: strongly unequal variances along a random basis
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    A = Q @ torch.diag(torch.logspace(-1, 1, d, dtype=torch.float64))
    slope_a = gaussian_slope(y1, y2, 200_000, A=A, seed=2)
    assert abs(slope_a - c) > 0.05, (slope_a, c)
    assert abs(slope_a - coupling(y1, y2, cov=A @ A.T)) < 0.01


def test_best_fit_recovers_line():
    g = torch.Generator().manual_seed(3)
    s1 = torch.randn(5000, generator=g, dtype=torch.float64)
    s2 = 0.25 + 0.8 * s1 + 0.01 * torch.randn(5000, generator=g, dtype=torch.float64)
    fit = best_fit(s1, s2)
    assert abs(fit["slope"] - 0.8) < 1e-3 and abs(fit["intercept"] - 0.25) < 1e-3 and fit["r2"] > 0.99


def test_cosines():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])
    assert abs(cosine(a, b) - 2 ** -0.5) < 1e-12
    m = cosine_matrix(torch.stack([a, b, -a]))
    assert torch.allclose(m, torch.tensor([[1, 2 ** -0.5, -1], [2 ** -0.5, 1, -(2 ** -0.5)],
                                           [-1, -(2 ** -0.5), 1]], dtype=torch.float64))


def test_low_data_baselines_vs_numpy_and_sklearn():
    """30+30 probe == numpy minimum-norm least squares (centred, d=128 > 60 rows); AUC == sklearn; with a
    planted direction u in anisotropic noise the 30+30 directions are far from u."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(4)
    d = 128
    u = torch.randn(d, generator=g, dtype=torch.float64)
    u /= u.norm()
    A = torch.randn(d, d, generator=g, dtype=torch.float64) / d ** 0.5 * torch.logspace(-1, 0.5, d, dtype=torch.float64)

    def sample(label: float, m: int) -> torch.Tensor:
        return torch.randn(m, d, generator=g, dtype=torch.float64) @ A.T + label * 1.0 * u

    tr_p, tr_n, te_p, te_n = sample(1, 30), sample(-1, 30), sample(1, 2000), sample(-1, 2000)
    probe = linear_probe(tr_p, tr_n)
    X = torch.cat([tr_p, tr_n]).numpy()
    y = np.r_[np.ones(30), -np.ones(30)]
    w_np = np.linalg.lstsq(X - X.mean(0), y - y.mean(), rcond=None)[0]
    assert np.abs(probe.numpy() - w_np).max() < 1e-8 * np.abs(w_np).max()
    md = mean_difference(tr_p, tr_n)
    assert np.allclose(md.numpy(), tr_p.numpy().mean(0) - tr_n.numpy().mean(0))
    assert cosine(probe, u) < 0.8 and cosine(md, u) < 0.8
    sep = separation(probe, te_p, te_n)
    scores = torch.cat([te_p, te_n]) @ probe
    assert abs(sep["auc"] - roc_auc_score(np.r_[np.ones(2000), np.zeros(2000)], scores.numpy())) < 1e-9
    assert abs(sep["r2"] - np.corrcoef(scores.numpy(), np.r_[np.ones(2000), np.zeros(2000)])[0, 1] ** 2) < 1e-10


def test_projection_hook_removes_direction():
    g = torch.Generator().manual_seed(5)
    u = torch.randn(16, generator=g, dtype=torch.float64)
    x = torch.randn(2, 3, 16, generator=g, dtype=torch.float64)
    out = projection_hook(u)(x)
    assert (out @ u).abs().max() < 1e-12
    assert torch.allclose(x - out, ((x @ u) / (u @ u))[..., None] * u)
    mask = torch.tensor([[True, False, True], [False, False, True]])
    out_m = projection_hook(u, mask)(x)
    assert (out_m[mask] @ u).abs().max() < 1e-12 and torch.equal(out_m[~mask], x[~mask])


@pytest.mark.parametrize("hook", ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_mid", "blocks.1.hook_resid_post",
                                  "ln_final.hook_normalized", "ln_final.hook_scale", "hook_embed"])
def test_feature_scores_at_any_hook(hook):
    """feature_scores == x·y from a full run_with_cache, for hooks in the blocks and after them (ln_final, which
    stop_at_layer would skip) or before them; the first position of each block is dropped."""
    pytest.importorskip("transformer_lens")
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=50, n_ctx=16,
                                  act_fn="gelu", normalization_type="LN", seed=0, device="cpu", dtype=torch.float64)
    model = HookedTransformer(cfg).eval()
    toks = torch.randint(0, 50, (5, 9), generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        _, cache = model.run_with_cache(toks)
    x = cache[hook][:, 1:]
    y = torch.randn(2, x.shape[-1], generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    got = feature_scores(model, y, hook, toks, batch_size=2)
    want = x.reshape(-1, x.shape[-1]) @ y.T
    assert got.shape == (5 * 8, 2) and torch.allclose(got, want, rtol=1e-12, atol=1e-12)
