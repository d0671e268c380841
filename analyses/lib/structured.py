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

        def back(Gt: Tensor, R: Tensor | None = None) -> Tensor:
            Gx = Gt[..., :-1, :]                                           # rows of the output x
            P = W_out @ Gx                                                 # [.., m, n]
            c_row = (b_out @ Gx)[..., None, :]
            Q = torch.cat([Gt[..., :-1, :], Gt[..., -1:, :] + c_row], -2)  # identity + c·b_out paths
            A = Wi if R is None else R @ Wi                                # [r, m]
            RQ = Q if R is None else R @ Q
            if P.shape[0] == 1 and s.dim() == 2:                           # shared P: one [B·r, m] @ [m, n] GEMM
                J = ((A[None] * s[:, None, :]).reshape(-1, A.shape[1]) @ P[0]).view(s.shape[0], A.shape[0], -1)
                return J + RQ
            return RQ + A @ (s[..., :, None] * P)
        return y, back

    def m_dash(xa: Tensor, Gt: Tensor) -> Tensor:
        """Σ_b G_b G_bᵀ for G_b = Q + W̃_in diag(s_b) P without forming G_b: the Hadamard form
        W̃_in [(P Pᵀ) ⊙ Σ_b s_b s_bᵀ] W̃_inᵀ + cross terms + N Q Qᵀ (Gt data-independent, no position axis)."""
        pre = (xa @ Wi).detach().requires_grad_(True)
        with torch.enable_grad():
            (s,) = torch.autograd.grad(act(pre).sum(), pre)
        Gt = Gt[0]
        Gx = Gt[:-1]
        P = W_out @ Gx
        Q = torch.cat([Gt[:-1], Gt[-1:] + (b_out @ Gx)[None]], 0)
        s1, S2 = s.sum(0), s.T @ s
        cross = Wi @ (s1[:, None] * (P @ Q.T))
        return xa.shape[0] * (Q @ Q.T) + cross + cross.T + Wi @ ((P @ P.T) * S2) @ Wi.T
    step.m_dash = m_dash
    return step


def unembed_jac(W_U: Tensor, b_U: Tensor) -> StepJac:
    """Logits y = x̃ W̃_U (no bias coordinate out)."""
    Wu = _aug(W_U, b_U)

    def step(xa: Tensor):
        return xa @ Wu, (lambda Gt, R=None: (Wu if R is None else R @ Wu) @ Gt)
    return step


def identity_jac() -> StepJac:
    """A step that returns its input (no final norm)."""
    def step(xa: Tensor):
        return xa, (lambda Gt, R=None: Gt if R is None else R @ Gt)
    step.is_identity = True
    return step


def last_query_attn_jac(W: dict[str, Tensor], prefix: str, scale: float) -> StepJac:
    """y = [x_last + Σ_h z_h W_O^h + c_last b_O, c_last], z_h = Σ_s A_hs ṽ_hs, causal softmax of the last query."""
    WQ = torch.cat([W[prefix + "W_Q"], W[prefix + "b_Q"][:, None]], 1)  # [h, d+1, e]
    WK = torch.cat([W[prefix + "W_K"], W[prefix + "b_K"][:, None]], 1)
    WV = torch.cat([W[prefix + "W_V"], W[prefix + "b_V"][:, None]], 1)
    WO, bO = W[prefix + "W_O"], W[prefix + "b_O"]                        # [h, e, d], [d]

    def forward(xa: Tensor):
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
        return y, A, kappa, qk, Adv

    def step(xa: Tensor):
        y, A, kappa, qk, Adv = forward(xa)

        def back(Gt: Tensor, R: Tensor | None = None) -> Tensor:
            WV_, kap, qk_ = WV, kappa, qk
            if R is not None:                                              # rotate the input side first
                WV_ = torch.einsum("ri,hie->hre", R, WV)
                kap, qk_ = kappa @ R.T, qk @ R.T
            GO = torch.einsum("hed,bdn->bhen", WO, Gt[:, :-1])            # [B|1, h, e, n]
            if GO.shape[0] == 1:
                val = torch.einsum("bhs,hin->bsin", A, torch.einsum("hie,hen->hin", WV_, GO[0]))
            else:
                val = torch.einsum("bhs,bhin->bsin", A, torch.einsum("hie,bhen->bhin", WV_, GO))
            rho = torch.einsum("bhse,bhen->bhsn", Adv, GO.expand(A.shape[0], -1, -1, -1))
            out = val + torch.einsum("bhi,bhsn->bsin", kap, rho)           # value + key paths
            c_row = (bO @ Gt[:, :-1])[:, None]                              # c_last -> b_O
            res = torch.cat([Gt[:, :-1], Gt[:, -1:] + c_row], 1)            # residual
            last = torch.einsum("bhsi,bhsn->bin", qk_, rho) + (res if R is None else R @ res)  # + query path
            out[:, -1] += last if last.shape[0] == out.shape[0] else last.expand(out.shape[0], -1, -1)
            return out
        return y, back

    def m_dash(xa: Tensor, Gt: Tensor) -> Tensor:
        """Σ_b Σ_s J_bs J_bsᵀ without forming J (Gt shared): J_bs = T1 + T2 + δ_sL T3 with T1 = Σ_h A_hs U_h
        (value path, U_h = W̃_V^h W_O^h G shared), T2 = Σ_h κ_h ρ_hsᵀ (key path, rank ≤ h) and
        T3 = Σ_{h,s'} qk_hs' ρ_hs'ᵀ + Res (query path and residual at the last position); the sum then only
        needs head-by-head Grams and [d+1, B·h·P] GEMMs instead of the [B·n·P, d+1] Jacobian."""
        _, A, kap, qk, Adv = forward(xa)
        B, H, P = A.shape
        G = Gt[0]
        GO = torch.einsum("hed,dn->hen", WO, G[:-1])                       # [h, e, n]
        U = torch.einsum("hie,hen->hin", WV, GO)                           # [h, i, n]
        rho = torch.einsum("bhse,hen->bhsn", Adv, GO)                      # [B, h, P, n]
        Res = torch.cat([G[:-1], G[-1:] + (bO @ G[:-1])[None]], 0)         # [i, n]
        Rt = rho.reshape(B, H * P, -1)                                     # [B, m=(h,s'), n]
        Qt = qk.permute(0, 3, 1, 2).reshape(B, -1, H * P)                  # [B, i, m]
        # (a) value-value: Σ_{h,k} (Σ_{b,s} A_bhs A_bks) U_h U_kᵀ
        M = torch.einsum("hk,hin,kjn->ij", torch.einsum("bhs,bks->hk", A, A), U, U)
        # (b) value-key: Σ_h U_h Σ_{b,k} (Σ_s A_bhs ρ_bks) κ_bkᵀ, and its transpose
        Z = torch.einsum("bhkn,bki->hni", torch.einsum("bhs,bksn->bhkn", A, rho), kap)
        tb = torch.einsum("hin,hnj->ij", U, Z)
        # (c) key-key: Σ_b Σ_{k,l} κ_bk (Σ_s ρ_bks·ρ_bls) κ_blᵀ
        tc = torch.einsum("bli,blj->ij", torch.einsum("bkl,bki->bli", torch.einsum("bksn,blsn->bkl", rho, rho),
                                                       kap), kap)
        # (d) last-position cross terms X_L T3ᵀ with X_L = T1_L + T2_L
        V = torch.einsum("bh,hin->bin", A[:, :, -1], U)                   # Σ_h A_bhL U_h   [B, i, n]
        Y = V @ Rt.transpose(1, 2) + torch.einsum("bki,bkm->bim", kap,
                                                  torch.einsum("bkn,bmn->bkm", rho[:, :, -1], Rt))
        XL_sum = V.sum(0) + torch.einsum("bki,bkn->in", kap, rho[:, :, -1])
        td = torch.einsum("bim,bjm->ij", Y, Qt) + XL_sum @ Res.T
        # (e) T3 T3ᵀ
        QPP = torch.einsum("bim,bmk->bik", Qt, Rt @ Rt.transpose(1, 2))
        te2 = torch.einsum("bim,bmj->ij", Qt, torch.einsum("bmn,jn->bmj", Rt, Res))
        te = torch.einsum("bik,bjk->ij", QPP, Qt) + te2 + te2.T + B * (Res @ Res.T)
        return M + tb + tb.T + tc + td + td.T + te
    m_dash.positions = True

    def edge_w(xa: Tensor, xhat: Tensor, Gt: Tensor, R: Tensor) -> Tensor:
        """w[b, r, n] = Σ_s J[b, n, s, r] x̂[b, s, r] for the squared edges (J w.r.t. the rotated input ẑ, x = ẑR),
        contracted over positions path by path instead of forming J [B, n, P, r]."""
        _, A, kap, qk, Adv = forward(xa)
        G = Gt[0]
        GO = torch.einsum("hed,dn->hen", WO, G[:-1])
        Ut = torch.einsum("hre,hen->hrn", torch.einsum("ri,hie->hre", R, WV), GO)
        rho = torch.einsum("bhse,hen->bhsn", Adv, GO)
        Res = torch.cat([G[:-1], G[-1:] + (bO @ G[:-1])[None]], 0)
        w = torch.einsum("bhr,hrn->brn", torch.einsum("bhs,bsr->bhr", A, xhat), Ut)                # value path
        w += torch.einsum("bhr,bhrn->brn", kap @ R.T, torch.einsum("bsr,bhsn->bhrn", xhat, rho))  # key path
        last = torch.einsum("bhsr,bhsn->brn", qk @ R.T, rho) + R @ Res                            # query, residual
        return w + xhat[:, -1, :, None] * last
    step.m_dash = m_dash
    step.edge_w = edge_w
    return step


def structured_jacobian(steps: list[StepJac], x: Tensor, C_out: Tensor | None, R_in: Tensor | None = None) -> Tensor:
    """Jacobian of (section(x) @ C_out) w.r.t. x for a chain of steps: [B|1, n_out, (P), d_in] (vmap layout).

    With R_in [r, d_in] the input side is rotated inside the first step (cheaper than rotating afterwards):
    the result is J @ R_inᵀ, i.e. the Jacobian w.r.t. ẑ when x = ẑ R_in."""
    backs = []
    h = x
    for st in steps:
        h, back = st(h)
        backs.append(back)
    n = h.shape[-1]
    Gt = (torch.eye(n, dtype=x.dtype) if C_out is None else C_out)[None]
    for i, back in enumerate(reversed(backs)):
        Gt = back(Gt, R_in) if i == len(backs) - 1 else back(Gt)
    return Gt.movedim(-1, 1)          # [B, n_out, (P), d_in]; batch 1 if the Jacobian is data-independent
