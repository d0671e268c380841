"""Observables and their pullback through the unembedding and LayerNorms or RMSNorms (Dunefsky & Cohan 2024, §3).

Conventions (transformer-lens, row vectors): logits = ln_final(x) @ W_U + b_U, so the observable value
n·logits = (W_U n)·ln_final(x) + n·b_U. Every pullback maps a covector y on a map's output to the covector
J^T y on its input, where J is the map's Jacobian (or the paper's approximation of it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from interp.errors import ConfigError

LN_MODES = ("none", "approx", "frozen", "exact")
APPROX_NORMS = ("scale", "raw", "unit")


def _token_id(model, tok: str | int) -> int:
    """One vocabulary id for a token string (must be a single token) or an id."""
    if isinstance(tok, int):
        if not 0 <= tok < model.cfg.d_vocab:
            raise ConfigError(f"token id {tok} outside the vocabulary [0, {model.cfg.d_vocab})")
        return tok
    if getattr(model, "tokenizer", None) is None:
        raise ConfigError(f"token {tok!r} given as text but the model has no tokenizer",
                          hint="pass integer token ids, or load the model with its tokenizer")
    ids = model.tokenizer.encode(tok, add_special_tokens=False)
    if len(ids) != 1:
        raise ConfigError(f"observable token {tok!r} is {len(ids)} tokens, not one",
                          hint="use single-token strings (often with a leading space, e.g. ' she')")
    return int(ids[0])


def observable(model, pos_tokens: Sequence[str | int], neg_tokens: Sequence[str | int] = ()) -> torch.Tensor:
    """n = Σ_pos e_tok − Σ_neg e_tok over the vocabulary (the paper's `make_lm_head_normal`). [d_vocab]"""
    if not pos_tokens and not neg_tokens:
        raise ConfigError("an observable needs at least one token", hint="e.g. pos=[' she'], neg=[' he']")
    n = torch.zeros(model.cfg.d_vocab, dtype=model.cfg.dtype)
    for t in pos_tokens:
        n[_token_id(model, t)] += 1.0
    for t in neg_tokens:
        n[_token_id(model, t)] -= 1.0
    return n


def observable_value(model, n: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """n·logits over the last axis."""
    return logits @ n.to(logits.dtype)


def pullback_unembed(model, n: torch.Tensor) -> torch.Tensor:
    """Range normal W_U n: the observable as a covector on the final LayerNorm's output. [d_model]"""
    return model.W_U.detach() @ n.to(model.W_U.dtype)


def is_rms(ln: torch.nn.Module) -> bool:
    """Whether a transformer-lens norm module is an RMSNorm (RMSNorm, RMSNormPre): no centring, no bias."""
    return type(ln).__name__.startswith("RMSNorm")


def _ln_parts(ln: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The input as the norm sees it, x_c, and its scale s = sqrt(mean(x_c²) + eps): x_c = x − mean(x) for a
    transformer-lens LayerNorm, x_c = x for an RMSNorm (s is then the root mean square of x)."""
    xc = x if is_rms(ln) else x - x.mean(-1, keepdim=True)
    s = (xc.pow(2).mean(-1, keepdim=True) + ln.eps).sqrt()
    return xc, s


def _ln_weight(ln: torch.nn.Module, like: torch.Tensor) -> torch.Tensor:
    """The LN gain w (ones for LNPre / no-gain norms)."""
    w = getattr(ln, "w", None)
    return torch.ones_like(like) if w is None else w.detach().to(like.dtype)


def pullback_layernorm(ln: torch.nn.Module, y: torch.Tensor, x: torch.Tensor | None = None,
                       mode: str = "approx", approx_norm: str = "scale") -> torch.Tensor:
    """J(x)^T y for a transformer-lens LayerNorm or RMSNorm `ln` at input x. y, x: [..., d_model].

    With g = w⊙y (w the gain) and P the norm's centring (LayerNorm: P = I − 11ᵀ/d, x_c = Px; RMSNorm: P = I,
    x_c = x), both norms are f(x) = w⊙(Px)/s(x) (+ b), s(x) = sqrt(|x_c|²/d + eps), so ∂s/∂x = x_c/(d s) and

    none:   y (norm ignored)
    approx: the paper's scalar-gain approximation, g/s; s is the norm's scale at x ("scale"),
            ||x||/√d as in the reference code ("raw"), or 1/√d (`estimate_dot`, ||x|| := 1: "unit")
    frozen: exact Jacobian with the scale s frozen at x: Pg/s (first-order exact when the model's hook_scale is
            frozen). For RMSNorm P = I, so frozen == approx("scale") == g/s.
    exact:  full Jacobian, J^T y = (1/s)(Pg − x_c (x_c·g)/(d s²)); for RMSNorm (1/s)(g − x (x·g)/(d s²)), which
            differs from g/s only along x (LayerNorm: along 1 and x_c).
    """
    if mode not in LN_MODES:
        raise ConfigError(f"unknown LayerNorm mode {mode!r}", hint=f"one of {LN_MODES}")
    if mode == "none":
        return y
    if approx_norm not in APPROX_NORMS:
        raise ConfigError(f"unknown approx_norm {approx_norm!r}", hint=f"one of {APPROX_NORMS}")
    if x is None and not (mode == "approx" and approx_norm == "unit"):
        raise ConfigError(f"LayerNorm mode {mode!r} needs the LN input x at the token",
                          hint="pass the cached LN input (e.g. blocks.L.hook_resid_pre at the position)")
    g = _ln_weight(ln, y) * y
    d = y.shape[-1]
    if mode == "approx":
        if approx_norm == "unit":
            return g * d ** 0.5
        xc, s = _ln_parts(ln, x.to(y.dtype))
        if approx_norm == "raw":
            s = x.to(y.dtype).norm(dim=-1, keepdim=True) / d ** 0.5
        return g / s
    xc, s = _ln_parts(ln, x.to(y.dtype))
    pg = g if is_rms(ln) else g - g.mean(-1, keepdim=True)
    if mode == "frozen":
        return pg / s
    return (pg - xc * (xc * g).sum(-1, keepdim=True) / (d * s * s)) / s


def find_boundary(f: Callable[[torch.Tensor], torch.Tensor], x_pos: torch.Tensor, x_neg: torch.Tensor,
                  tol: float = 1e-12, iters: int = 200) -> tuple[torch.Tensor, dict]:
    """Point x_t = x_neg + t(x_pos − x_neg) on the segment with f(x_t) = 0 (the paper's
    `domain_boundary_intersection`, there solved with Adam; here by bisection + secant on t in float64).

    Returns (x_t, info) with info = {t, residual = |f(x_t)|, crossed = whether f changes sign on the segment}.
    Without a sign change, t minimises |f| over a grid refined by golden-section search.
    """
    x_pos, x_neg = x_pos.detach(), x_neg.detach()

    def ft(t: float) -> float:
        with torch.no_grad():
            return float(f(x_neg + t * (x_pos - x_neg)))

    f0, f1 = ft(0.0), ft(1.0)
    crossed = (f0 <= 0.0 <= f1) or (f1 <= 0.0 <= f0)
    if crossed:
        lo, hi, flo = 0.0, 1.0, f0
        t, fv = (0.0, f0) if abs(f0) < abs(f1) else (1.0, f1)
        for _ in range(iters):
            if abs(fv) <= tol:
                break
            mid = 0.5 * (lo + hi)
            fm = ft(mid)
            if (fm > 0) == (flo > 0):
                lo, flo = mid, fm
            else:
                hi = mid
            t, fv = mid, fm
            if hi - lo < 1e-17:
                break
    else:
        grid = torch.linspace(0, 1, 65).tolist()
        vals = [abs(ft(g)) for g in grid]
        i = int(torch.tensor(vals).argmin())
        a, b = grid[max(i - 1, 0)], grid[min(i + 1, 64)]
        r = (5 ** 0.5 - 1) / 2
        for _ in range(80):
            c, e = b - r * (b - a), a + r * (b - a)
            if abs(ft(c)) < abs(ft(e)):
                b = e
            else:
                a = c
        t = 0.5 * (a + b)
        fv = ft(t)
    x_t = x_neg + t * (x_pos - x_neg)
    return x_t, {"t": float(t), "residual": abs(float(fv)), "crossed": bool(crossed)}


def ln_final_boundary(model, n: torch.Tensor, x_pos: torch.Tensor, x_neg: torch.Tensor
                      ) -> tuple[torch.Tensor, dict]:
    """Tangent normal of {x : n·logits(x) = 0} where the segment between two prompts' final residuals
    crosses it: ∇_x n·(ln_final(x) W_U + b_U) at x_t = exact LN pullback of W_U n at x_t. [d_model]"""
    y = pullback_unembed(model, n)
    c = float(n.to(model.b_U.dtype) @ model.b_U.detach())
    ln = model.ln_final

    def f(x: torch.Tensor) -> torch.Tensor:
        return ln(x.view(1, 1, -1).to(model.cfg.dtype)).view(-1) @ y + c

    x_t, info = find_boundary(f, x_pos, x_neg)
    return pullback_layernorm(ln, y, x_t, mode="exact"), info
