"""Feature scores over a dataset, best-fit slopes vs coupling, low-data baselines and projection debiasing.

A feature score is x·y for the residual activation x at the hook where the feature vector y lives
(the paper scores at ln_1_in with LN-approximated feature vectors, BestFitScores.ipynb).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from interp.errors import ConfigError
from interp.stats.lstsq import StreamingLstsq, lstsq


def feature_scores(model, vectors: torch.Tensor, hook: str, tokens: torch.Tensor, batch_size: int = 16,
                   skip_first: int = 1) -> torch.Tensor:
    """Scores x·y_k of every token's activation at `hook` for each row y_k of vectors [k, d]. [n_tokens, k]

    skip_first drops the first positions of each block (attention-sink tokens with outlying norms). Hooks inside
    block L stop the forward pass after it; other hooks (ln_final, unembed, embeddings) run the whole model."""
    if vectors.dim() == 1:
        vectors = vectors[None]
    stop = int(hook.split(".")[1]) + 1 if hook.startswith("blocks.") else None
    out = []
    for s in range(0, tokens.shape[0], batch_size):
        with torch.inference_mode():
            _, cache = model.run_with_cache(tokens[s:s + batch_size], names_filter=[hook], stop_at_layer=stop)
        x = cache[hook][:, skip_first:].reshape(-1, vectors.shape[1]).double()
        out.append(x @ vectors.double().T)
    return torch.cat(out)


def iter_cache_scores(batches: Iterable[torch.Tensor], vectors: torch.Tensor) -> torch.Tensor:
    """Scores over an interp activation cache (`open_cache(dir).iter_batches(hook, bs)`). [n_tokens, k]"""
    return torch.cat([b.double() @ vectors.double().T for b in batches])


def best_fit(s1: torch.Tensor, s2: torch.Tensor) -> dict[str, float]:
    """OLS line s2 ≈ a + slope·s1 (float64) and its r², via interp.stats streaming least squares."""
    sol = lstsq(s1.double()[:, None], s2.double()[:, None])
    pred = sol.predict(s1.double()[:, None])[:, 0]
    ss_res = float(((s2.double() - pred) ** 2).sum())
    ss_tot = float(((s2.double() - s2.double().mean()) ** 2).sum())
    return {"slope": float(sol.W[0, 0]), "intercept": float(sol.b[0]), "r2": 1 - ss_res / max(ss_tot, 1e-300),
            "n": int(s1.numel())}


def gaussian_slope(y1: torch.Tensor, y2: torch.Tensor, n_samples: int, A: torch.Tensor | None = None,
                   seed: int = 0, chunk: int = 100_000) -> float:
    """OLS slope of x·y2 on x·y1 for x = A z, z ~ N(0, I) (A = I: isotropic), streamed in chunks (float64)."""
    d = y1.numel()
    gen = torch.Generator().manual_seed(seed)
    acc = StreamingLstsq(1, 1)
    done = 0
    while done < n_samples:
        m = min(chunk, n_samples - done)
        z = torch.randn(m, d, generator=gen, dtype=torch.float64)
        x = z if A is None else z @ A.double().T
        acc.update((x @ y1.double())[:, None], (x @ y2.double())[:, None])
        done += m
    return float(acc.solve().W[0, 0])


# ------------------------------------------------------------------------------------------ baselines
def mean_difference(x_pos: torch.Tensor, x_neg: torch.Tensor) -> torch.Tensor:
    """Mean-difference direction μ_pos − μ_neg. [d]"""
    return x_pos.double().mean(0) - x_neg.double().mean(0)


def linear_probe(x_pos: torch.Tensor, x_neg: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
    """Linear-regression probe of the label (+1 / −1) on activations (minimum-norm when n < d, as the
    paper's 30+30 baseline). Returns the weight vector [d]."""
    X = torch.cat([x_pos, x_neg]).double()
    y = torch.cat([torch.ones(len(x_pos)), -torch.ones(len(x_neg))]).double()
    return lstsq(X, y, ridge=ridge).W[:, 0]


def separation(direction: torch.Tensor, x_pos: torch.Tensor, x_neg: torch.Tensor) -> dict[str, float]:
    """How well scores x·u separate two held-out classes: AUC (sign-free: max(AUC, 1−AUC) is not taken,
    the sign is part of the direction), r² of the label on the score, and Cohen's d."""
    u = direction.double()
    sp, sn = x_pos.double() @ u, x_neg.double() @ u
    allv = torch.cat([sp, sn])
    ranks = allv.argsort().argsort().double() + 1
    n1, n0 = len(sp), len(sn)
    auc = float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
    lab = torch.cat([torch.ones(n1), torch.zeros(n0)]).double()
    c = torch.corrcoef(torch.stack([allv, lab]))[0, 1]
    pooled = ((sp.var() * (n1 - 1) + sn.var() * (n0 - 1)) / (n1 + n0 - 2)).sqrt()
    return {"auc": auc, "r2": float(c * c), "cohen_d": float((sp.mean() - sn.mean()) / pooled.clamp_min(1e-300))}


def sample_split(x: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k random rows for training and the rest held out."""
    if len(x) <= k:
        raise ConfigError(f"need more than {k} examples, have {len(x)}", hint="use more prompts or fewer train")
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return x[perm[:k]], x[perm[k:]]


# ------------------------------------------------------------------------------------------ debiasing
def projection_hook(direction: torch.Tensor, mask: torch.Tensor | None = None):
    """A transformer-lens hook that removes the component along `direction` at every position (or only where
    mask [batch, pos] is True)."""
    u = direction.double() / direction.double().norm()

    def hook(act: torch.Tensor, hook=None) -> torch.Tensor:
        uu = u.to(act.dtype)
        coef = act @ uu
        if mask is not None:
            coef = coef * mask.to(act.dtype)
        return act - coef[..., None] * uu

    return hook


def observable_at_last(model, n: torch.Tensor, prompts: Sequence[Sequence[int]], fwd_hooks=None,
                       batch_size: int = 32) -> torch.Tensor:
    """n·logits at each prompt's last token; prompts (token-id lists of any length) are right-padded in batches
    (exact for causal models). fwd_hooks: a hook list, or a callable tokens [b, T] -> hook list. [n_prompts]"""
    from .prompts import pad_right

    vals = []
    for s in range(0, len(prompts), batch_size):
        toks, last = pad_right(list(prompts[s:s + batch_size]))
        with torch.inference_mode():
            hooks = fwd_hooks(toks) if callable(fwd_hooks) else (fwd_hooks or [])
            logits = model.run_with_hooks(toks, fwd_hooks=hooks)
        vals.append(logits[torch.arange(len(last)), last].double() @ n.double())
    return torch.cat(vals)
