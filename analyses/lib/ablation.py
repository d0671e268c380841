"""Node- and edge-ablation of LIB / PCA graphs (spec lib.md §7; ApolloResearch/rib, rib/ablations.py).

Node ablation at layer l keeps the first k basis directions: f -> f C[:, :k] C_pinv[:k] (k = all: no change).
Edge ablation of section l keeps the largest edges: each output direction i is computed from the input with
the directions j of E[i, j] outside the kept set zeroed; the constant node's edges are free when centering.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from analyses.lib.basis import LIBLayer
from analyses.lib.cut import LIBModel

Metric = Callable[[Tensor], float]


def node_schedule(n: int, dense_below: int = 20, base: float = 1.2) -> list[int]:
    """Numbers of kept directions to evaluate: every k < dense_below, then geometric steps, always n."""
    ks = set(range(1, min(n, dense_below) + 1))
    k = float(dense_below)
    while k < n:
        ks.add(int(round(k)))
        k *= base
    ks.add(n)
    return sorted(ks)


@torch.no_grad()
def node_ablation_curve(lm: LIBModel, l: int, acts_l: Tensor, basis: Tensor, basis_pinv: Tensor,
                        metric: Metric, ks: list[int] | None = None) -> tuple[list[int], list[float]]:
    """Metric of the model output with only the first k directions of `basis` kept at node layer l."""
    n = basis.shape[1]
    ks = ks or node_schedule(n)
    scores = []
    for k in ks:
        x = acts_l if k >= n else acts_l @ (basis[:, :k] @ basis_pinv[:k])
        scores.append(metric(lm.forward_from(l, x)))
    return ks, scores


def threshold_count(ks: list[int], scores: list[float], target: float) -> int:
    """Smallest k with score ≥ target such that every larger evaluated k also meets it."""
    best = ks[-1]
    for k, s in sorted(zip(ks, scores), reverse=True):
        if s < target:
            break
        best = k
    return best


def edge_mask(E: Tensor, n_kept: int, keep_const: bool) -> Tensor:
    """Boolean mask keeping the n_kept largest edges (ties kept); column 0 (constant node) free if keep_const."""
    sub = E[:, 1:] if keep_const else E
    if n_kept >= sub.numel():
        return torch.ones_like(E, dtype=torch.bool)
    m = torch.zeros_like(sub, dtype=torch.bool) if n_kept <= 0 else sub >= torch.topk(sub.flatten(), n_kept).values[-1]
    if keep_const:
        full = torch.ones_like(E, dtype=torch.bool)
        full[:, 1:] = m
        return full
    return m


@torch.no_grad()
def edge_ablated_output(lm: LIBModel, l: int, acts_l: Tensor, L_in: LIBLayer, L_out: LIBLayer,
                        mask: Tensor, max_elems: float = 3e7) -> Tensor:
    """Model output when section l only uses the kept edges (one masked forward per distinct mask row)."""
    in_hat = acts_l @ L_in.C
    uniq, inv = mask.unique(dim=0, return_inverse=True)
    gs = max(1, int(max_elems // acts_l.numel()))
    out_hat = None
    for g0 in range(0, uniq.shape[0], gs):
        group = uniq[g0: g0 + gs].to(in_hat.dtype)                      # [g, J]
        shape = (group.shape[0],) + (1,) * (in_hat.ndim - 1) + (group.shape[1],)
        x = (in_hat[None] * group.view(shape)) @ L_in.C_pinv
        y = lm.sections[l](x.reshape(-1, *acts_l.shape[1:]))
        y = y.reshape(group.shape[0], acts_l.shape[0], *y.shape[1:]) @ L_out.C
        if out_hat is None:
            out_hat = torch.zeros(y.shape[1:], dtype=y.dtype)
        for g in range(group.shape[0]):
            rows = inv == (g0 + g)
            out_hat[..., rows] = y[g][..., rows]
    return lm.forward_from(l + 1, out_hat @ L_out.C_pinv)


def edges_required(lm: LIBModel, l: int, acts_l: Tensor, L_in: LIBLayer, L_out: LIBLayer, E: Tensor,
                   metric: Metric, base_score: float, tol: float = 1e-3, keep_const: bool = True
                   ) -> tuple[int, list[tuple[int, float]]]:
    """Bisect the number of kept edges to the smallest with metric ≥ base − tol (rib's edge bisect)."""
    n_total = (E.shape[1] - (1 if keep_const else 0)) * E.shape[0]
    lo, hi = 0, n_total                      # hi always satisfies the target
    trace: list[tuple[int, float]] = [(n_total, base_score)]
    while hi - lo > 1:
        mid = int(np.sqrt(max(lo, 1) * hi)) if hi > 4 * max(lo, 1) else (lo + hi) // 2
        mid = min(max(mid, lo + 1), hi - 1)
        s = metric(edge_ablated_output(lm, l, acts_l, L_in, L_out, edge_mask(E, mid, keep_const)))
        trace.append((mid, s))
        if s >= base_score - tol:
            hi = mid
        else:
            lo = mid
    return hi, sorted(trace)
