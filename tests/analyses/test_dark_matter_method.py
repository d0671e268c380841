"""Dark matter maths against planted truth: the spec's acceptance checks 1–3 and independent float64 references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analyses.dark_matter.method import (
    cross_component_regression,
    decompose_sae_error,
    make_split,
    norm_prediction_baselines,
    norm_prediction_suite,
    per_token_width_predictability,
    predict_error_norm,
    shrinkage_diagnostic,
)
from analyses.dark_matter.synthetic import introduced_error, introduced_error_grid, sparse_feature_data
from interp.errors import ConfigError


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return sparse_feature_data(n=20_000, d=64, n_features=512, mean_active=8.0, seed=0)


def test_identity_and_lstsq_reference(data) -> None:
    codes, D = data
    x = codes @ D
    g = torch.Generator().manual_seed(3)
    recon = 0.7 * x + 0.2 * torch.randn(x.shape, generator=g)
    dec = decompose_sae_error(x, recon, seed=1)
    assert (recon + dec.linear_error + dec.nonlinear_error - x).abs().max() < 1e-5  # check 1
    tr = dec.split.train  # independent reference: torch.linalg.lstsq on [x, 1] in float64
    A = torch.cat([x[tr].double(), torch.ones(len(tr), 1, dtype=torch.float64)], 1)
    sol = torch.linalg.lstsq(A, (x - recon)[tr].double(), driver="gelsd").solution
    assert torch.linalg.norm(dec.W - sol[:-1]) / torch.linalg.norm(sol[:-1]) < 1e-8
    assert torch.allclose(dec.b, sol[-1], atol=1e-8)
    # recon = 0.7 x + noise -> SaeError = 0.3 x − noise: linear map ≈ 0.3·I, a pure rescaling
    assert abs(dec.shrinkage["lambda"] - 0.3) < 0.02
    assert dec.shrinkage["rel_dist_from_scaled_identity"] < 0.1
    assert dec.fvu_sae_plus_linear < dec.fvu_sae


def test_dead_sae_is_fully_linear(data) -> None:
    codes, D = data
    x = codes @ D + 0.5  # offset: the intercept must absorb it
    dec = decompose_sae_error(x, torch.zeros_like(x))  # dead SAE: Sae(x) = 0, SaeError = x
    assert dec.r2_vec > 1 - 1e-9 and dec.fvu_sae_plus_linear < 1e-12
    assert abs(dec.shrinkage["lambda"] - 1) < 1e-9 and dec.shrinkage["rel_dist_from_scaled_identity"] < 1e-9


def test_pure_reconstruction_noise_is_unpredictable(data) -> None:
    codes, D = data
    m = introduced_error(codes, D, sigma_rec=0.3, train_frac=0.5)  # check 2
    assert abs(m["r2_vec"]) < 0.02 and abs(m["r2_norm"]) < 0.02
    x = codes @ D
    test = make_split(x.shape[0], train_frac=0.5, seed=0).test
    xt = x[test].double()
    share = 64 * 0.3 ** 2 * len(test) / float(((xt - xt.mean(0)) ** 2).sum())  # analytic noise share
    assert abs(m["fvu_linear_sum"] - share) < 0.01 and abs(m["fvu_rec"] - share) < 0.01


def test_pure_activation_noise_is_partly_linear(data) -> None:
    codes, D = data
    m = introduced_error(codes, D, sigma_act=0.3, train_frac=0.5)  # check 3
    assert m["r2_vec"] > 0.15
    assert m["fvu_linear_sum"] < m["fvu_rec"] - 0.02
    c = introduced_error(codes, D, sigma_act=0.3, sigma_rec=0.3, ablate_frac=0.3, train_frac=0.5)
    assert c["fvu_linear_sum"] < c["fvu_rec"] and 0.05 < c["r2_vec"] < m["r2_vec"]


def test_introduced_error_table(data) -> None:
    codes, D = data
    out = introduced_error_grid(codes[:4000], D, sigmas=(0.0, 1.0, 2.0), ablate_frac=0.5)
    t = out["correlations"]
    assert len(out["grid"]) == 9
    # activation noise drives the linear estimate, reconstruction noise the nonlinear one (Fig. 15 annotations)
    assert t["sigma_act~est_linear"] > 0.5 and t["sigma_rec~est_nonlinear"] > 0.5
    assert t["sigma_act~est_linear"] > t["sigma_rec~est_linear"]


def _np_fit(X: np.ndarray, Y: np.ndarray, tr: np.ndarray, te: np.ndarray, intercept: bool = True) -> tuple:
    """Independent float64 reference: numpy lstsq on the train rows; (test R² mean over dims, coefficients)."""
    A = np.c_[X, np.ones(len(X))] if intercept else X
    Y2 = Y.reshape(len(Y), -1)
    W = np.linalg.lstsq(A[tr], Y2[tr], rcond=None)[0]
    P = A[te] @ W
    r2d = 1 - ((Y2[te] - P) ** 2).sum(0) / ((Y2[te] - Y2[te].mean(0)) ** 2).sum(0)
    return float(r2d.mean()), W


def _sq(v: np.ndarray) -> np.ndarray:
    return (v ** 2).sum(1)


@pytest.mark.parametrize("intercept", [True, False])
def test_decomposition_and_norm_suite_match_numpy(data, intercept: bool) -> None:
    codes, D = data
    g = torch.Generator().manual_seed(5)
    x = ((codes @ D)[:6000] + 0.5).double()  # offset: with and without an intercept give different fits
    recon = 0.6 * x + torch.tanh(x) @ (0.3 * torch.randn(64, 64, generator=g, dtype=torch.float64)) \
        + 0.05 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    dec = decompose_sae_error(x, recon, fit_intercept=intercept, seed=2)
    suite = norm_prediction_suite(x, recon, dec, fit_intercept=intercept)
    X, R = x.numpy(), recon.numpy()
    tr, te = dec.split.train.numpy(), dec.split.test.numpy()
    E = X - R
    r2_vec, W = _np_fit(X, E, tr, te, intercept)
    A = np.c_[X, np.ones(len(X))] if intercept else X
    L = A @ W
    N = E - L
    assert np.abs(dec.W.numpy() - W[:64]).max() < 1e-8 * np.abs(W).max()
    assert (dec.b.abs().max() < 1e-12) if not intercept else np.allclose(dec.b.numpy(), W[64], atol=1e-8)
    tot = ((X[te] - X[te].mean(0)) ** 2).sum()
    assert abs(dec.r2_vec - r2_vec) < 1e-8
    assert abs(dec.fvu_sae - ((X[te] - R[te]) ** 2).sum() / tot) < 1e-10
    assert abs(dec.fvu_sae_plus_linear - ((X[te] - R[te] - L[te]) ** 2).sum() / tot) < 1e-8
    assert abs(dec.r2_norm - _np_fit(X, _sq(E), tr, te, intercept)[0]) < 1e-8
    expect = {"x": X, "sae_recon": R, "sae_error": E, "linear_error": L, "nonlinear_error": N}
    for k, v in expect.items():
        assert abs(suite[k] - _np_fit(X, _sq(v), tr, te, intercept)[0]) < 1e-7, k
    assert 0.2 < dec.r2_vec < 0.99 and suite["x"] < 0.99  # a non-trivial case: not everything is ≈ 1


def test_norm_targets_are_squared_norms() -> None:
    """Planted truth: ‖e‖² = 1 + 3·x₀ exactly (linear in x), while ‖e‖ = √(1 + 3·x₀) is not."""
    g = torch.Generator().manual_seed(6)
    x = torch.randn(5000, 8, generator=g, dtype=torch.float64)
    x[:, 0] = torch.rand(5000, generator=g, dtype=torch.float64) * 5
    u = torch.nn.functional.normalize(torch.randn(5000, 8, generator=g, dtype=torch.float64), dim=1)
    e = u * (1 + 3 * x[:, :1]).sqrt()
    recon = x - e
    dec = decompose_sae_error(x, recon)
    tr, te = dec.split.train.numpy(), dec.split.test.numpy()
    r2_unsquared = _np_fit(x.numpy(), e.norm(dim=1).numpy(), tr, te)[0]
    assert r2_unsquared < 0.99  # the unsquared norm is visibly nonlinear in x
    assert dec.r2_norm > 1 - 1e-9
    assert norm_prediction_suite(x, recon, dec)["sae_error"] > 1 - 1e-9
    assert predict_error_norm(x, recon, split=dec.split) > 1 - 1e-9
    assert abs(predict_error_norm(x, recon, split=dec.split, squared=False) - r2_unsquared) < 1e-9
    base = norm_prediction_baselines(x, recon, dec.split, l0=x[:, 0])
    assert base["acts"] > 1 - 1e-9 and base["sae_l0"] > 1 - 1e-9


def test_norm_baselines(data) -> None:
    codes, D = data
    x = (codes @ D)[:6000]
    g = torch.Generator().manual_seed(5)
    recon = 0.6 * x + 0.01 * torch.randn(x.shape, generator=g)
    split = make_split(6000)
    ids = torch.arange(6000) % 7
    base = norm_prediction_baselines(x, recon, split, token_ids=ids, l0=(codes[:6000] > 0).sum(1).float(),
                                     token_loss=torch.zeros(6000))
    # ‖SaeError‖² = 0.16‖x‖² up to noise: predictable from ‖x‖ far better than from a token-id table
    assert base["x_norm"] > 0.9 and base["token_id_mean"] < 0.05 and abs(base["token_loss"]) < 0.01
    X, tr, te = x.double().numpy(), split.train.numpy(), split.test.numpy()
    y = _sq(X - recon.double().numpy())
    assert abs(base["x_norm"] - _np_fit(np.linalg.norm(X, axis=1, keepdims=True), y, tr, te)[0]) < 1e-8
    assert abs(base["acts"] - _np_fit(X, y, tr, te)[0]) < 1e-7
    table = np.array([y[tr][ids.numpy()[tr] == i].mean() for i in range(7)])
    yt, pt = y[te], table[ids.numpy()[te]]
    assert abs(base["token_id_mean"] - (1 - ((yt - pt) ** 2).sum() / ((yt - yt.mean()) ** 2).sum())) < 1e-9


def test_per_token_width_predictability() -> None:
    g = torch.Generator().manual_seed(2)
    hard = torch.rand(5000, generator=g) * 3  # shared per-token difficulty, falling with width
    norms = torch.stack([hard * s + 0.1 * torch.randn(5000, generator=g) for s in (1.0, 0.8, 0.6)], 1)
    nonlin = norms + 0.5 * torch.randn(5000, 3, generator=g)
    nonlin[:, 1] = hard ** 2  # width 1's nonlinear norm carries extra information about the others
    r2m, gain = per_token_width_predictability(norms, nonlin)
    off = r2m[~torch.eye(3, dtype=torch.bool)]
    assert torch.all(off > 0.8) and torch.all(torch.diagonal(r2m) == 1)
    split = make_split(5000, train_frac=0.6, seed=1)
    tr, te = split.train.numpy(), split.test.numpy()
    E, NL = norms.double().numpy(), nonlin.double().numpy()
    for i in range(3):
        for j in range(3):
            if i == j:
                continue
            old = _np_fit(E[:, i:i + 1], E[:, j], tr, te)[0]
            new = _np_fit(np.c_[E[:, i], NL[:, i]], E[:, j], tr, te)[0]
            assert abs(float(r2m[i, j]) - old) < 1e-9
            assert abs(float(gain[i, j]) - (new - old) / (1 - old) * 100) < 1e-6
    assert float(gain[1, 0]) > 5  # the planted extra information shows as a gain
    with pytest.raises(ConfigError):
        per_token_width_predictability(norms[:, 0])


def test_cross_component_regression() -> None:
    g = torch.Generator().manual_seed(4)
    src = torch.randn(4000, 8, generator=g, dtype=torch.float64)
    target = src @ torch.randn(8, 6, generator=g, dtype=torch.float64)
    out = cross_component_regression({"informative": src, "noise": torch.randn(4000, 8, generator=g)},
                                     {"err": target}, make_split(4000))
    assert out["informative"]["err"] > 1 - 1e-9 and abs(out["noise"]["err"]) < 0.02


def test_bad_inputs_raise() -> None:
    with pytest.raises(ConfigError):
        decompose_sae_error(torch.zeros(10, 3), torch.zeros(10, 4))
    with pytest.raises(ConfigError):
        make_split(3)
    assert shrinkage_diagnostic(torch.zeros(3, 2)) == {}


class _TopK(torch.nn.Module):
    """A tiny TopK SAE with an overcomplete, non-orthogonal decoder: re-encoding Sae(x) does not give Sae(x) back."""

    def __init__(self, d: int = 16, m: int = 48, k: int = 4, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        W = torch.nn.functional.normalize(torch.randn(m, d, generator=g), dim=-1)
        self.W_dec, self.W_enc = torch.nn.Parameter(W), torch.nn.Parameter(W.T.clone())
        self.b_dec = torch.nn.Parameter(0.1 * torch.randn(d, generator=g))
        self.k, self.cfg = k, type("Cfg", (), {"d_sae": m})()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """ReLU of the k largest pre-activations."""
        pre = torch.relu((x - self.b_dec) @ self.W_enc)
        v, i = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter_(-1, i, v)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """f·W_dec + b_dec."""
        return f @ self.W_dec + self.b_dec


@pytest.mark.parametrize("ablate", [0.0, 0.5])
def test_sae_introduced_error_keeps_reencoding_error(ablate: float) -> None:
    """Spec §5: x := Sae(acts), rec = decode(encode(x) ⊙ mask); float64 numpy reference (old code: rec = x at 0%)."""
    from analyses.dark_matter.config import Config
    from analyses.dark_matter.studies import _synthetic

    sae = _TopK()
    acts = torch.randn(3000, 16, generator=torch.Generator().manual_seed(7)) * 2
    cfg = Config(synthetic_tokens=2000, synthetic_sigmas=[0.0], synthetic_ablate=ablate, seed=3)
    cell = _synthetic(cfg, acts, sae)["grid"][0]
    with torch.no_grad():  # independent: the SAE's own encode/decode, mask from the real activations' features
        feats = sae.encode(acts[:2000])
        x = sae.decode(feats)
        means = feats.mean(0)
        assert len(set(means.tolist())) == 48  # no ties: the ablated set is well defined
        mask = torch.ones(48)
        mask[torch.argsort(means)[: int(round(ablate * 48))]] = 0
        rec = sae.decode(sae.encode(x) * mask)
    X, R = x.double().numpy(), rec.double().numpy()
    split = make_split(2000, train_frac=0.5, seed=3)
    tr, te = split.train.numpy(), split.test.numpy()
    E = X - R
    A = np.c_[X, np.ones(2000)]
    P = A[te] @ np.linalg.lstsq(A[tr], E[tr], rcond=None)[0]
    tot = ((X[te] - X[te].mean()) ** 2).sum()
    fvu_rec = ((X[te] - R[te]) ** 2).sum() / tot
    fvu_lin = ((X[te] - R[te] - P) ** 2).sum() / tot
    assert fvu_rec > 0.01  # the SAE's re-encoding error survives at 0% ablation
    assert abs(cell["fvu_rec_flat"] - fvu_rec) < 1e-5 * fvu_rec
    assert abs(cell["fvu_linear_sum_flat"] - fvu_lin) < 1e-4 * fvu_lin
