"""Inference-time gradient pursuit (§6, `encoder_pursuit.py`): re-encode x with the SAE's decoder at each token's L0.

Per step, batched over tokens, with D = W_dec [n_latents, d] and s = x − b_dec:
    r = s − wD;  ip = r Dᵀ;  S ← S ∪ {argmax ip} (no abs: positive correlations only);  g = ip ⊙ 1_S;
    c = gD;  η = ⟨c, r⟩ / ⟨c, c⟩;  w ← clamp(w + η g, min=0)
for max(L0) steps; a token's weights freeze once its support reaches its own target L0. Reconstruction = wD + b_dec.
"""

from __future__ import annotations

import torch

from interp.errors import ConfigError


def gradient_pursuit(signals: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor | None, target_l0s: torch.Tensor,
                     *, nonneg: bool = True, extra_steps: int = 0,
                     batch_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes [N, n_latents] and reconstructions [N, d] by gradient pursuit (float64 internally).

    extra_steps: further refinement steps on the final support (0 reproduces the reference).
    """
    if signals.dim() != 2 or W_dec.dim() != 2 or signals.shape[1] != W_dec.shape[1]:
        raise ConfigError(f"signals {tuple(signals.shape)} and W_dec {tuple(W_dec.shape)} do not match",
                          hint="pass signals [N, d] and W_dec [n_latents, d]")
    target = target_l0s.to(torch.long).view(-1).expand(signals.shape[0]) if target_l0s.numel() == 1 \
        else target_l0s.to(torch.long).view(-1)
    if target.shape[0] != signals.shape[0]:
        raise ConfigError("target_l0s must have one entry per signal (or be a scalar)", hint="pass [N] L0s")
    D = W_dec.to(torch.float64)
    codes, recons = [], []
    for s0 in range(0, signals.shape[0], batch_size):
        w, rec = _pursuit_batch(signals[s0:s0 + batch_size].to(torch.float64), D,
                                None if b_dec is None else b_dec.to(torch.float64),
                                target[s0:s0 + batch_size], nonneg, extra_steps)
        codes.append(w)
        recons.append(rec)
    return torch.cat(codes).to(signals.dtype), torch.cat(recons).to(signals.dtype)


def _pursuit_batch(x: torch.Tensor, D: torch.Tensor, b_dec: torch.Tensor | None, target: torch.Tensor,
                   nonneg: bool, extra_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch; the support is kept as index lists so only the atom choice touches the whole dictionary."""
    s = x - b_dec if b_dec is not None else x
    n, m = s.shape[0], D.shape[0]
    n_steps = int(target.max()) if n else 0
    idx = torch.zeros(n, max(n_steps, 1), dtype=torch.long)
    valid = torch.zeros(n, max(n_steps, 1), dtype=torch.bool)
    coef = torch.zeros(n, max(n_steps, 1), dtype=torch.float64)
    rows = torch.arange(n)
    for step in range(n_steps + extra_steps):
        active = (target > step) if step < n_steps else (target > 0)
        if not bool(active.any()):
            break
        k = min(step + 1, n_steps)
        if step < n_steps:  # pick the atom most positively correlated with the residual, not yet chosen
            atoms = D[idx[:, :step]]                                   # [n, step, d]
            r = s - torch.einsum("nk,nkd->nd", coef[:, :step], atoms)
            ip = r @ D.T                                               # [n, m]
            if step:
                ip = ip.masked_fill(torch.zeros(n, m, dtype=torch.bool).scatter_(1, idx[:, :step], valid[:, :step]),
                                    float("-inf"))
            pick = ip.argmax(1)
            idx[rows[active], step] = pick[active]
            valid[rows[active], step] = True
        atoms = D[idx[:, :k]]                                          # [n, k, d]
        r = s - torch.einsum("nk,nkd->nd", coef[:, :k], atoms)
        g = torch.einsum("nd,nkd->nk", r, atoms) * valid[:, :k]        # ip restricted to the support
        c = torch.einsum("nk,nkd->nd", g, atoms)
        eta = (c * r).sum(1) / (c * c).sum(1).clamp_min(1e-300)
        upd = coef[:, :k] + eta[:, None] * g
        if nonneg:
            upd = upd.clamp_min(0)
        coef[:, :k] = torch.where(active[:, None], upd, coef[:, :k])
    w = torch.zeros(n, m, dtype=torch.float64)
    w.scatter_add_(1, idx, coef * valid)
    return w, w @ D + (b_dec if b_dec is not None else 0.0)
