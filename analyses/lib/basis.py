"""The LIB basis C^l and the interaction edges (spec lib.md §2-4), on sections with the bias folded in.

    C^l = Y U D^{-1/2} V diag(√Λ)   (columns sorted by Λ, truncated)      C^l_pinv = diag(1/√Λ) Vᵀ D^{1/2} Uᵀ Y⁻¹
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from analyses.lib.cut import LIBModel, Section
from analyses.lib.jacobian import auto_chunk, chunks, integrated_gradient, integrated_jacobian, section_jacobian
from analyses.lib.linalg import (
    centering_matrix,
    eigendecompose,
    gram,
    integration_points,
    masked_eigendecompose,
    move_const_dir_first,
    sorted_lambda_matrices,
)
from interp.errors import ConfigError

BASES = ("jacobian", "(1-0)*alpha", "(1-alpha)^2", "svd", "neuron")
EDGE_FORMULAS = ("squared", "functional")


class LIBLayer(NamedTuple):
    """One node layer's basis: C (orig × rib), C_pinv (rib × orig), the PCA basis W, and Λ / D aligned with C / W."""

    name: str
    C: Tensor
    C_pinv: Tensor
    W: Tensor
    W_pinv: Tensor
    V: Tensor | None = None
    Lam: Tensor | None = None      # Λ of C's columns (sorted, kept); None for svd / neuron
    D: Tensor | None = None        # PCA eigenvalues of W's columns (kept)
    M: Tensor | None = None        # M in the whitened PCA basis (jacobian / IG bases)


def _identity(name: str, d: int) -> LIBLayer:
    I = torch.eye(d, dtype=torch.float64)
    return LIBLayer(name, I, I.clone(), I.clone(), I.clone())


def _rotated(section: Section, C_next: Tensor | None) -> Section:
    return section if C_next is None else (lambda z: section(z) @ C_next)


def _check(basis: str, integration: str, n_intervals: int) -> None:
    if basis not in BASES:
        raise ConfigError(f"unknown basis '{basis}'", hint=f"use one of {', '.join(BASES)}")
    integration_points(n_intervals, integration)  # validates the rule


def lib_basis(section: Section, acts_in: Tensor, C_next: Tensor | None, *, name: str = "",
              basis: str = "jacobian", center: bool = True, trunc: float = 1e-15,
              integration: str = "gradient", n_intervals: int = 0, chunk_size: int | None = None,
              method: str = "auto") -> LIBLayer:
    """LIB basis of node layer l from its activations [N, (P), d+1] and the next layer's C (§2, steps 1-10)."""
    _check(basis, integration, n_intervals)
    f = acts_in.detach().to(torch.float64)
    d = f.shape[-1]
    if basis == "neuron":
        return _identity(name, d)
    N, P = f.shape[0], (f.shape[1] if f.ndim == 3 else 1)
    mean = f.reshape(-1, d).mean(0) if center else None
    D_all, U_all = eigendecompose(gram(f, mean))                      # step 2: PCA
    if center:
        D_all, U_all = move_const_dir_first(D_all, U_all)
    keep = D_all > trunc                                               # truncation 1
    D, U = D_all[keep], U_all[:, keep]
    Y = centering_matrix(mean) if center else torch.eye(d, dtype=torch.float64)
    Y_inv = centering_matrix(mean, inverse=True) if center else torch.eye(d, dtype=torch.float64)
    W, W_pinv = Y @ U, U.T @ Y_inv                                     # step 3
    if basis == "svd":
        return LIBLayer(name, W, W_pinv, W, W_pinv, D=D)
    R, R_pinv = W / D.sqrt(), D.sqrt()[:, None] * W_pinv               # step 4: whitening
    g = _rotated(section, C_next)
    alphas, weights = integration_points(n_intervals, integration)
    M_dash = torch.zeros(d, d, dtype=torch.float64)
    Lam_dash = torch.zeros(d, d, dtype=torch.float64)
    if basis == "jacobian":                                            # step 5, §3: M' = Σ Jᵀ J
        with torch.no_grad():
            n_out = g(f[:1]).numel()
        size = chunk_size or auto_chunk(n_out, 4 * f[0].numel() + 2048)
        m_dash = getattr(section, "m_dash", None) if method == "auto" else None
        closed = m_dash is not None and len(alphas) == 1 and f.ndim == (3 if getattr(m_dash, "positions", False)
                                                                         else 2)
        if closed:                      # residual MLP (Hadamard form) or last-query attention: M' without J
            Gt = (C_next if C_next is not None else torch.eye(n_out, dtype=torch.float64))[None]
            for sl in chunks(N, 8192 if f.ndim == 2 else 1024):
                M_dash += float(weights[0]) ** 2 * m_dash(float(alphas[0]) * f[sl], Gt)
        for sl in (chunks(N, size) if not closed else []):
            J = section_jacobian(section, f[sl], C_next, alphas, weights, method)
            rows = (sl.stop - sl.start) if J.shape[0] == 1 else 1      # data-independent Jacobian
            J = J.reshape(-1, d)
            M_dash += rows * (J.T @ J)
    else:
        with torch.no_grad():
            g_const_all = g(f)

        def objective(z: Tensor, x: Tensor, gc: Tensor) -> Tensor:
            if basis == "(1-0)*alpha":
                return (g(z) * gc).sum()
            return -((gc - g(z)) ** 2).sum()
        for sl in chunks(N, chunk_size or 4096):
            G = integrated_gradient(lambda z, x, gc=g_const_all[sl]: objective(z, x, gc), f[sl], alphas, weights)
            G, x = G.reshape(-1, d), f[sl].reshape(-1, d)
            M_dash += G.T @ G
            Lam_dash += G.T @ x
    M_dash /= N * P
    Lam_dash /= N * P
    M = R_pinv @ M_dash @ R_pinv.T                                      # step 6
    n_masked = 1 if center else 0
    eigvals, V = masked_eigendecompose(M, n_masked)                     # step 7
    if basis == "jacobian":                                             # step 8
        Lam = eigvals
    else:
        Lam = (V.T @ R_pinv @ Lam_dash @ R @ V).diag().abs()
    L, L_inv = sorted_lambda_matrices(Lam, trunc, n_masked)             # step 9
    C, C_pinv = R @ V @ L, L_inv @ V.T @ R_pinv                         # step 10
    return LIBLayer(name, C, C_pinv, W, W_pinv, V, (L ** 2).sum(0), D, M)


def lib_edges(section: Section, acts_in: Tensor, L_in: LIBLayer, L_out: LIBLayer, *, formula: str = "squared",
              integration: str = "gradient", n_intervals: int = 0, chunk_size: int | None = None,
              method: str = "auto") -> Tensor:
    """Edges E[i, j] ≥ 0 from input LIB direction j to output direction i (§4): squared or functional."""
    if formula not in EDGE_FORMULAS:
        raise ConfigError(f"unknown edge formula '{formula}'", hint=f"use one of {', '.join(EDGE_FORMULAS)}")
    f_hat = (acts_in.detach().to(torch.float64) @ L_in.C)
    N, has_pos = f_hat.shape[0], f_hat.ndim == 3
    P = f_hat.shape[1] if has_pos else 1
    C_in_pinv, C_out = L_in.C_pinv, L_out.C

    def g(z: Tensor) -> Tensor:
        return section(z @ C_in_pinv) @ C_out
    alphas, weights = integration_points(n_intervals, integration)
    with torch.no_grad():
        out_shape = g(f_hat[:1]).shape[1:]
    I = out_shape[-1]
    E = torch.zeros(I, f_hat.shape[-1], dtype=torch.float64)
    size = chunk_size or auto_chunk(out_shape.numel(), 4 * f_hat[0].numel() + 2048)
    for sl in chunks(N, size):
        x = f_hat[sl]
        edge_w = getattr(section, "edge_w", None) if method == "auto" and len(alphas) == 1 else None
        if formula == "squared" and edge_w is not None and has_pos:    # last-query attention: Σ_s J·x̂ path-wise
            w = float(weights[0]) * edge_w(float(alphas[0]) * (x @ C_in_pinv), x, C_out[None], C_in_pinv)
            E += w.square_().sum(0).T
        elif formula == "squared":
            if method == "auto" and getattr(section, "jac_steps", None) is not None:
                J = section_jacobian(section, x @ C_in_pinv, C_out, alphas, weights, method, R_in=C_in_pinv)
            else:
                J = integrated_jacobian(g, x, alphas, weights, "loop" if method == "loop" else "vmap")
            J = J.reshape(J.shape[0], -1, I, *x.shape[1:])
            xs = x[:, None, None]
            J_hat = (J * xs).sum(3) if has_pos else J * xs             # Σ_s, §4 squared edge (sign squares away)
            E += J_hat.square_().sum((0, 1))
        else:
            with torch.no_grad():
                gc = g(x)
            for a, w in zip(alphas, weights):
                def h(z: Tensor, gc: Tensor = gc) -> Tensor:
                    r = (gc - g(z)) ** 2
                    return r.sum(1) if r.ndim == 3 else r
                J = integrated_jacobian(h, x, [a], [w], "loop" if method == "loop" else "vmap")
                E -= (J * x[:, None]).sum((0, 2) if has_pos else 0)
    return E / (N * P)


def lib_build(lm: LIBModel, inputs: Tensor, *, basis: str = "jacobian", center: bool = True,
              trunc: float = 1e-15, integration: str = "gradient", n_intervals: int = 0,
              edge_formula: str | None = "squared", chunk_size: int | None = None, method: str = "auto",
              acts: list[Tensor] | None = None,
              rotate_final_node_layer: bool = False) -> tuple[list[LIBLayer], list[Tensor]]:
    """Bases for every node layer (computed output -> input, returned input -> output) and edges per section.

    The final node layer keeps the identity basis (C^L = None in rib: raw outputs) unless rotate_final_node_layer,
    which gives it the PCA ('svd') basis (§2 step 0; centred unless it is 'output', which has no bias coordinate).
    """
    _check(basis, integration, n_intervals)
    if acts is None:
        with torch.no_grad():
            acts = lm.all_acts(inputs)
    layers: list[LIBLayer | None] = [None] * len(acts)
    last = lm.node_layers[-1]
    rotate = rotate_final_node_layer and basis != "neuron"
    layers[-1] = (lib_basis(lambda z: z, acts[-1], None, name=last, basis="svd", center=center and last != "output",
                            trunc=trunc) if rotate else _identity(last, acts[-1].shape[-1]))
    for l in range(len(acts) - 2, -1, -1):
        C_next = layers[l + 1].C if (l + 1 < len(acts) - 1 or rotate) else None
        layers[l] = lib_basis(lm.sections[l], acts[l], C_next, name=lm.node_layers[l], basis=basis, center=center,
                              trunc=trunc, integration=integration, n_intervals=n_intervals,
                              chunk_size=chunk_size, method=method)
    edges = []
    if edge_formula is not None:
        for l in range(len(acts) - 1):
            edges.append(lib_edges(lm.sections[l], acts[l], layers[l], layers[l + 1], formula=edge_formula,
                                   integration=integration, n_intervals=n_intervals, chunk_size=chunk_size,
                                   method=method))
    return layers, edges


def to_lib(acts: Tensor, layer: LIBLayer) -> Tensor:
    """f̂ = f @ C."""
    return acts.to(torch.float64) @ layer.C


def from_lib(acts_hat: Tensor, layer: LIBLayer) -> Tensor:
    """f = f̂ @ C_pinv (exact up to truncation)."""
    return acts_hat @ layer.C_pinv
