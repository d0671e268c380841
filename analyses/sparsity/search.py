"""CETT-PPL-p% (Sparsing Law Algorithm 1, App. F): the largest CETT value c whose sparse forward keeps the mean
perplexity ratio over the last checkpoints below 1 + p.

    l, r = 0, 1;  while r − l > eps:  mid = (l + r) / 2
        ratio_k = exp(L_sparse,k(mid) − L_dense,k)  for each checkpoint k
        mean_k ratio_k < 1 + p  →  l = mid   else  r = mid
    c* = (l + r) / 2
Every evaluation recomputes each layer's τ_ℓ for the current c (done by the caller's `loss_at`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence


def cett_ppl_search(loss_at: Callable[[float], Sequence[float]], dense: Sequence[float], p: float = 0.01,
                    eps: float = 1e-6, hi: float = 1.0, max_iter: int = 60) -> float:
    """c*: `loss_at(c)` gives the sparse mean token losses of the checkpoints, `dense` their dense losses."""
    lo, up = 0.0, float(hi)
    for _ in range(max_iter):
        if up - lo <= eps:
            break
        mid = 0.5 * (lo + up)
        ratios = [math.exp(s - d) for s, d in zip(loss_at(mid), dense)]
        if sum(ratios) / len(ratios) < 1 + p:
            lo = mid
        else:
            up = mid
    return 0.5 * (lo + up)
