"""The paper's maths on flattened `[N, d]` tensors (Engels, Riggs, Tegmark 2024, arXiv 2410.14670).

    SaeError(x)       = x − Sae(x)                                   (§2; the reference stores the opposite sign)
    LinearError(x)    = x W + b, W = argmin Σ‖SaeError − (xW + b)‖²  (§3; least squares on the train split)
    NonlinearError(x) = SaeError(x) − LinearError(x)                 (so Sae + Linear + Nonlinear = x exactly)

Every regression is fitted on a random train split and scored on the held-out rows (`run_lstsq`: random permutation,
train on the first rows, test on the rest). R² for a vector target is the mean over dims with SS_tot around the
test-set mean, unless another convention of `interp.stats.metrics` is asked for. Norm targets are SQUARED norms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from interp.errors import ConfigError
from interp.stats.lstsq import LstsqSolution, lstsq
from interp.stats.metrics import fvu, r2

_F64 = torch.float64


@dataclass(frozen=True)
class Split:
    """Row indices of the train and test parts of a random permutation."""

    train: torch.Tensor
    test: torch.Tensor


def make_split(n: int, *, train_frac: float = 0.6, n_train: int | None = None, seed: int = 0) -> Split:
    """Random permutation, first `n_train` (or `train_frac`·n) rows train, the rest test (as in `run_lstsq`)."""
    k = int(n_train) if n_train is not None else int(round(train_frac * n))
    k = min(k, n - 1)
    if k < 2 or n - k < 2:
        raise ConfigError(f"cannot split {n} rows into train/test ({k} train)",
                          hint="use more tokens or a train fraction between 0 and 1")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return Split(train=perm[:k], test=perm[k:])


def _check_pair(acts: torch.Tensor, recon: torch.Tensor) -> None:
    if acts.dim() != 2 or acts.shape != recon.shape:
        raise ConfigError(f"acts {tuple(acts.shape)} and recon {tuple(recon.shape)} must both be [N, d]",
                          hint="flatten [batch, pos, d] activations with a position selector first")


def fit_and_score(X: torch.Tensor, Y: torch.Tensor, split: Split, *, fit_intercept: bool = True,
                  ridge: float = 0.0, convention: str = "mean_over_dims") -> tuple[float, LstsqSolution]:
    """Least squares of Y on X over the train rows; test-split R² (given convention) and the solution."""
    sol = lstsq(X[split.train], Y[split.train], fit_intercept=fit_intercept, ridge=ridge)
    Yt = Y[split.test]
    pred = sol.predict(X[split.test], dtype=_F64)
    return r2(Yt, pred.view_as(Yt.to(_F64)) if Yt.dim() == 1 else pred, convention), sol


@dataclass
class Decomposition:
    """SAE error split into linear and nonlinear parts, with the paper's scores on the test split."""

    W: torch.Tensor                 # [d, d] float64, LinearError = acts @ W + b
    b: torch.Tensor                 # [d]
    sae_error: torch.Tensor         # [N, d] x − Sae(x)
    linear_error: torch.Tensor      # [N, d]
    nonlinear_error: torch.Tensor   # [N, d]
    split: Split
    r2_vec: float                   # test R² of LinearError for SaeError (vector, chosen convention)
    r2_norm: float                  # test R² of ‖SaeError‖² predicted linearly from x
    fvu_sae: float                  # test FVU of Sae(x)
    fvu_sae_plus_linear: float      # test FVU of Sae(x) + LinearError(x) ("nonlinear FVU")
    shrinkage: dict = field(default_factory=dict)
    fit_intercept: bool = True
    convention: str = "mean_over_dims"

    def scalars(self) -> dict[str, float]:
        """The headline numbers as a flat dict."""
        return {"r2_vec": self.r2_vec, "r2_norm": self.r2_norm, "fvu_sae": self.fvu_sae,
                "fvu_sae_plus_linear": self.fvu_sae_plus_linear,
                "linear_share_of_fvu": 1 - self.fvu_sae_plus_linear / self.fvu_sae if self.fvu_sae > 0 else 0.0,
                **{f"shrinkage_{k}": v for k, v in self.shrinkage.items()}}


def shrinkage_diagnostic(W: torch.Tensor) -> dict[str, float]:
    """Reviewers' objection: is the linear map just λ·I? λ* = tr(W)/d minimises ‖W − λI‖_F; report the ratio."""
    if W.dim() != 2 or W.shape[0] != W.shape[1]:
        return {}
    W = W.to(_F64)
    d = W.shape[0]
    lam = float(torch.trace(W) / d)
    resid = torch.linalg.norm(W - lam * torch.eye(d, dtype=_F64))
    norm = torch.linalg.norm(W)
    return {"lambda": lam, "rel_dist_from_scaled_identity": float(resid / norm) if norm > 0 else 0.0}


def decompose_sae_error(acts: torch.Tensor, recon: torch.Tensor, *, fit_intercept: bool = True,
                        train_frac: float = 0.6, n_train: int | None = None, seed: int = 0, ridge: float = 0.0,
                        convention: str = "mean_over_dims", split: Split | None = None) -> Decomposition:
    """SaeError = x − recon regressed on x (train split); returns the three errors for all rows and test scores."""
    _check_pair(acts, recon)
    split = split or make_split(acts.shape[0], train_frac=train_frac, n_train=n_train, seed=seed)
    sae_error = acts - recon
    sol = lstsq(acts[split.train], sae_error[split.train], fit_intercept=fit_intercept, ridge=ridge)
    linear_error = sol.predict(acts, dtype=acts.dtype)
    nonlinear_error = sae_error - linear_error
    t = split.test
    x64, e64 = acts[t].to(_F64), sae_error[t].to(_F64)
    lin64 = sol.predict(acts[t], dtype=_F64)
    r2_vec = r2(e64, lin64, convention)
    r2_norm, _ = fit_and_score(acts, sae_error.to(_F64).pow(2).sum(1), split, fit_intercept=fit_intercept,
                               ridge=ridge)
    rec64 = x64 - e64
    return Decomposition(
        W=sol.W, b=sol.b, sae_error=sae_error, linear_error=linear_error, nonlinear_error=nonlinear_error,
        split=split, r2_vec=r2_vec, r2_norm=r2_norm, fvu_sae=fvu(x64, rec64),
        fvu_sae_plus_linear=fvu(x64, rec64 + lin64), shrinkage=shrinkage_diagnostic(sol.W),
        fit_intercept=fit_intercept, convention=convention)


def predict_error_norm(acts: torch.Tensor, recon: torch.Tensor, *, squared: bool = True, fit_intercept: bool = True,
                       split: Split | None = None, seed: int = 0) -> float:
    """Test R² of the (squared) SAE error norm predicted linearly from x."""
    _check_pair(acts, recon)
    split = split or make_split(acts.shape[0], seed=seed)
    norm = (acts - recon).to(_F64).norm(dim=1)
    return fit_and_score(acts, norm ** 2 if squared else norm, split, fit_intercept=fit_intercept)[0]


NORM_TARGETS = ("x", "sae_recon", "sae_error", "linear_error", "nonlinear_error")


def norm_prediction_suite(acts: torch.Tensor, recon: torch.Tensor, dec: Decomposition | None = None, *,
                          fit_intercept: bool = True) -> dict[str, float]:
    """Fig. 7: test R² of ‖·‖² of x, Sae(x), SaeError, LinearError, NonlinearError, each predicted from x."""
    dec = dec or decompose_sae_error(acts, recon, fit_intercept=fit_intercept)
    parts = {"x": acts, "sae_recon": recon, "sae_error": dec.sae_error, "linear_error": dec.linear_error,
             "nonlinear_error": dec.nonlinear_error}
    return {k: fit_and_score(acts, v.to(_F64).pow(2).sum(1), dec.split, fit_intercept=fit_intercept)[0]
            for k, v in parts.items()}


def norm_prediction_baselines(acts: torch.Tensor, recon: torch.Tensor, split: Split, *,
                              token_ids: torch.Tensor | None = None, token_loss: torch.Tensor | None = None,
                              l0: torch.Tensor | None = None) -> dict[str, float]:
    """Fig. 13: test R² for ‖SaeError‖² from x, ‖x‖, the SAE's L0, the model's per-token loss, and a token-id table."""
    target = (acts - recon).to(_F64).pow(2).sum(1)
    out = {"acts": fit_and_score(acts, target, split)[0],
           "x_norm": fit_and_score(acts.to(_F64).norm(dim=1, keepdim=True), target, split)[0]}
    if l0 is not None:
        out["sae_l0"] = fit_and_score(l0.to(_F64).view(-1, 1), target, split)[0]
    if token_loss is not None:
        out["token_loss"] = fit_and_score(token_loss.to(_F64).view(-1, 1), target, split)[0]
    if token_ids is not None:  # lookup table: mean train error norm per token id (global mean for unseen ids)
        ids = token_ids.long().view(-1)
        tr, te = split.train, split.test
        n_vocab = int(ids.max()) + 1
        sums = torch.zeros(n_vocab, dtype=_F64).index_add_(0, ids[tr], target[tr])
        cnts = torch.zeros(n_vocab, dtype=_F64).index_add_(0, ids[tr], torch.ones_like(target[tr]))
        table = torch.where(cnts > 0, sums / cnts.clamp_min(1), target[tr].mean())
        out["token_id_mean"] = r2(target[te], table[ids[te]])
    return out


def per_token_width_predictability(err_norms: torch.Tensor, nonlinear_norms: torch.Tensor | None = None, *,
                                   seed: int = 1, train_frac: float = 0.6) -> tuple[torch.Tensor, torch.Tensor | None]:
    """§4: R²[i, j] of width j's per-token error norm from [norm_i, 1]; gain (%) from adding width i's nonlinear norm.

    err_norms, nonlinear_norms: [N, n_saes] (‖SaeError‖ and ‖NonlinearError‖ per token, not squared).
    Returns r2 [n, n] (diagonal = 1) and pct_gain [n, n] = (R²_new − R²_old)/(1 − R²_old)·100 (or None).
    """
    if err_norms.dim() != 2:
        raise ConfigError("err_norms must be [N, n_saes]", hint="stack one column of norms per SAE")
    n_saes = err_norms.shape[1]
    split = make_split(err_norms.shape[0], train_frac=train_frac, seed=seed)
    E = err_norms.to(_F64)
    r2m = torch.eye(n_saes, dtype=_F64)
    gain = None if nonlinear_norms is None else torch.zeros(n_saes, n_saes, dtype=_F64)
    for i in range(n_saes):
        for j in range(n_saes):
            if i == j:
                continue
            r2m[i, j] = fit_and_score(E[:, i:i + 1], E[:, j], split)[0]
            if gain is not None:
                X2 = torch.stack([E[:, i], nonlinear_norms[:, i].to(_F64)], 1)
                new = fit_and_score(X2, E[:, j], split)[0]
                old = float(r2m[i, j])
                gain[i, j] = (new - old) / (1 - old) * 100 if old < 1 else 0.0
    return r2m, gain


def cross_component_regression(sources: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], split: Split,
                               *, fit_intercept: bool = True,
                               convention: str = "mean_over_dims") -> dict[str, dict[str, float]]:
    """§7 / Fig. 10b: test R² of each target error [N, d_t] from each source tensor [N, d_src].

    All targets of one source share one least-squares solve (XᵀX is accumulated once): the columns of the
    stacked target are independent regressions, so this equals fitting each target alone.
    """
    names = list(targets)
    widths = [targets[t].shape[1] if targets[t].dim() == 2 else 1 for t in names]
    Y = torch.cat([targets[t].reshape(targets[t].shape[0], -1).to(_F64) for t in names], 1)
    out: dict[str, dict[str, float]] = {}
    for sname, X in sources.items():
        sol = lstsq(X[split.train], Y[split.train], fit_intercept=fit_intercept)
        pred = sol.predict(X[split.test], dtype=_F64)
        Yt, col, row = Y[split.test], 0, {}
        for t, w in zip(names, widths):
            row[t] = r2(Yt[:, col:col + w], pred[:, col:col + w], convention)
            col += w
        out[sname] = row
    return out
