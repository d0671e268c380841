"""Inference-time gradient pursuit (§6, `encoder_pursuit.py`): re-encode x with the SAE's decoder at each token's L0.

Per step, batched over tokens, with D = W_dec [n_latents, d] and s = x − b_dec:
    r = s − wD;  ip = r Dᵀ;  S = {w ≠ 0} ∪ {argmax ip} (no abs: positive correlations only);  g = ip ⊙ 1_S;
    c = gD;  η = ⟨c, r⟩ / ⟨c, c⟩;  w ← clamp(w + η g, min=0)
for max(L0) steps; a token's weights are frozen after its own target-L0 steps. As in the reference, the support is
recomputed from w each step, so an atom the clamp zeroed can return and the final L0 can fall below the target.
Reconstruction = wD + b_dec.
"""

from __future__ import annotations

import torch

from interp.errors import ConfigError


def gradient_pursuit(signals: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor | None, target_l0s: torch.Tensor,
                     *, nonneg: bool = True, extra_steps: int = 0,
                     batch_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes [N, n_latents] and reconstructions [N, d] by gradient pursuit (float64 internally).

    extra_steps: further steps on each token's final support w ≠ 0 after the reference's (0 = the reference).
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
    """One batch; the reference's dense step on index lists (slot j: atom idx[:, j], weight coef[:, j]).

    Slot j is in the support S while coef[:, j] ≠ 0 (the reference's w ≠ 0). Each step appends the argmax atom as a
    new slot unless it is already in S; an atom the clamp zeroed can thus come back in a later slot.
    """
    s = x - b_dec if b_dec is not None else x
    n, m = s.shape[0], D.shape[0]
    n_steps = int(target.max()) if n else 0
    idx = torch.zeros(n, n_steps, dtype=torch.long)
    coef = torch.zeros(n, n_steps, dtype=torch.float64)
    final = torch.zeros_like(coef)
    for step in range(n_steps + extra_steps):
        k = min(step, n_steps)
        if step == n_steps:  # refinement: continue from each token's frozen weights, support fixed to w ≠ 0
            coef = final.clone()
        atoms = D[idx[:, :k]]                                          # [n, k, d]
        r = s - torch.einsum("nk,nkd->nd", coef[:, :k], atoms)
        valid = coef[:, :k] != 0
        if step < n_steps:
            ip = r @ D.T                                               # [n, m]
            pick = ip.argmax(1)
            new = ~((idx[:, :k] == pick[:, None]) & valid).any(1)      # not already in S
            idx[:, k] = pick
            k += 1
            atoms = torch.cat([atoms, D[pick][:, None]], 1)
            valid = torch.cat([valid, new[:, None]], 1)
            g = ip.gather(1, idx[:, :k]) * valid
        else:
            g = torch.einsum("nd,nkd->nk", r, atoms) * valid
        c = torch.einsum("nk,nkd->nd", g, atoms)
        eta = (c * r).sum(1) / (c * c).sum(1).clamp_min(1e-300)
        upd = coef[:, :k] + eta[:, None] * g
        coef[:, :k] = upd.clamp_min(0) if nonneg else upd
        if step < n_steps:  # tokens whose target is reached now keep these weights
            done = (target == step + 1).nonzero().view(-1)
            final[done] = coef[done]
        else:
            final = coef
    w = torch.zeros(n, m, dtype=torch.float64).scatter_add_(1, idx, final)
    return w, w @ D + (b_dec if b_dec is not None else 0.0)
