"""Closed-form section Jacobians for the common transformer steps (no-norm residual MLP, last-query attention,
unembed), composed output -> input as explicit matrices.

Why: autodiff repeats, for every sample and output direction, products of weight matrices that do not depend on
the data (W_V·W_O, W_out·C_next, ...). Here those products are formed once and each sample only pays for its
data-dependent factors (attention pattern, ReLU mask), which makes the Jacobians of the modular-addition model
an order of magnitude cheaper. Every formula is tested against `torch.func` autodiff (tests/analyses/test_lib_jac*).

Convention: a "gradient matrix" Gt[b, (p), a, n] = ∂(y · C)[n] / ∂x̃[a] of the step output y w.r.t. its folded input
x̃ = [x, c]; each step maps its output-side Gt to the input side. A leading batch size of 1 means "shared by all
samples" (data-independent), which the steps exploit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

StepJac = Callable[[Tensor], tuple[Tensor, Callable[[Tensor], Tensor]]]


def _aug(W: Tensor, b: Tensor) -> Tensor:
    """Stack a bias below its weight: [d, ...] and [...] -> [d+1, ...] (the folded-bias weight)."""
    return torch.cat([W, b[None]], 0)


def mlp_jac(W_in: Tensor, b_in: Tensor, W_out: Tensor, b_out: Tensor, act: Callable[[Tensor], Tensor]) -> StepJac:
    """Residual MLP y = [x + act(x̃ W̃_in) W_out + c b_out, c] (no norm)."""
    Wi = _aug(W_in, b_in)                                                  # [d+1, m]

    def step(xa: Tensor):
        pre = (xa @ Wi).detach().requires_grad_(True)
        with torch.enable_grad():
            a = act(pre)
            (s,) = torch.autograd.grad(a.sum(), pre)                      # act'(pre), element-wise
        y = torch.cat([xa[..., :-1] + a.detach() @ W_out + xa[..., -1:] * b_out, xa[..., -1:]], -1)

        def back(Gt: Tensor) -> Tensor:
            Gx = Gt[..., :-1, :]                                           # rows of the output x
            P = W_out @ Gx                                                 # [.., m, n]
            out = Gt + Wi @ (s[..., :, None] * P)
            c_row = (b_out @ Gx)[..., None, :]
            return torch.cat([out[..., :-1, :], out[..., -1:, :] + c_row], -2)
        return y, back
    return step


def unembed_jac(W_U: Tensor, b_U: Tensor) -> StepJac:
    """Logits y = x̃ W̃_U (no bias coordinate out)."""
    Wu = _aug(W_U, b_U)

    def step(xa: Tensor):
        return xa @ Wu, (lambda Gt: Wu @ Gt)
    return step


def identity_jac() -> StepJac:
    """A step that returns its input (no final norm)."""
    def step(xa: Tensor):
        return xa, (lambda Gt: Gt)
    return step


def last_query_attn_jac(W: dict[str, Tensor], prefix: str, scale: float) -> StepJac:
    """y = [x_last + Σ_h z_h W_O^h + c_last b_O, c_last], z_h = Σ_s A_hs ṽ_hs, causal softmax of the last query."""
    WQ = torch.cat([W[prefix + "W_Q"], W[prefix + "b_Q"][:, None]], 1)  # [h, d+1, e]
    WK = torch.cat([W[prefix + "W_K"], W[prefix + "b_K"][:, None]], 1)
    WV = torch.cat([W[prefix + "W_V"], W[prefix + "b_V"][:, None]], 1)
    WO, bO = W[prefix + "W_O"], W[prefix + "b_O"]                        # [h, e, d], [d]

    def step(xa: Tensor):
        q = torch.einsum("bi,hie->bhe", xa[:, -1], WQ)                    # [B, h, e]
        k = torch.einsum("bsi,hie->bhse", xa, WK)                         # [B, h, P, e]
        v = torch.einsum("bsi,hie->bhse", xa, WV)
        A = (torch.einsum("bhe,bhse->bhs", q, k) / scale).softmax(-1)     # [B, h, P]
        z = torch.einsum("bhs,bhse->bhe", A, v)
        y = xa[:, -1, :-1] + torch.einsum("bhe,hed->bd", z, WO) + xa[:, -1, -1:] * bO
        y = torch.cat([y, xa[:, -1, -1:]], -1)
        kappa = torch.einsum("hie,bhe->bhi", WK, q) / scale                # ∂score_s/∂x̃_s   [B, h, d+1]
        qk = torch.einsum("hie,bhse->bhsi", WQ, k) / scale                 # ∂score_s/∂x̃_last [B, h, P, d+1]
        Adv = A[..., None] * (v - z[:, :, None])                           # ∂z/∂score_s      [B, h, P, e]

        def back(Gt: Tensor) -> Tensor:
            GO = torch.einsum("hed,bdn->bhen", WO, Gt[:, :-1])            # [B|1, h, e, n]
            if GO.shape[0] == 1:
                val = torch.einsum("bhs,hin->bsin", A, torch.einsum("hie,hen->hin", WV, GO[0]))
            else:
                val = torch.einsum("bhs,bhin->bsin", A, torch.einsum("hie,bhen->bhin", WV, GO))
            rho = torch.einsum("bhse,bhen->bhsn", Adv, GO.expand(A.shape[0], -1, -1, -1))
            out = val + torch.einsum("bhi,bhsn->bsin", kappa, rho)          # value + key paths
            last = torch.einsum("bhsi,bhsn->bin", qk, rho) + Gt             # query path + residual
            last = torch.cat([last[:, :-1], last[:, -1:] + (bO @ Gt[:, :-1])[:, None]], 1)
            out[:, -1] += last if last.shape[0] == out.shape[0] else last.expand(out.shape[0], -1, -1)
            return out
        return y, back
    return step


def structured_jacobian(steps: list[StepJac], x: Tensor, C_out: Tensor | None) -> Tensor:
    """Jacobian of (section(x) @ C_out) w.r.t. x for a chain of steps: [B|1, n_out, (P), d_in] (vmap layout)."""
    backs = []
    h = x
    for st in steps:
        h, back = st(h)
        backs.append(back)
    n = h.shape[-1]
    Gt = (torch.eye(n, dtype=x.dtype) if C_out is None else C_out)[None]
    for back in reversed(backs):
        Gt = back(Gt)
    return Gt.movedim(-1, 1)          # [B, n_out, (P), d_in]; batch 1 if the Jacobian is data-independent
