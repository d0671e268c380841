"""The paper's linear-error fit streamed over an interp cache: memory O(d²) whatever N, data-parallel under torchrun.

    fit = fit_linear_error_from_cache("cache", "blocks.2.hook_resid_post", sae, rows=(0, 600_000))
    fit.solution.W, fit.solution.b        # LinearError(x) = x W + b, as in method.decompose_sae_error
    fit.r2, fit.fvu_sae, fit.fvu_sae_plus_linear   # in-sample, from the streamed sums (no second pass)

SaeError = x − Sae(x) is computed batch by batch and regressed on x with interp.stats.lstsq_from_cache; under
torchrun (after interp.distributed.init_from_env()) every rank reads its own batches and XᵀX, XᵀY and the sums
below are all-reduced, so every rank returns the fit over all rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from interp.distributed import all_reduce_sum, data_split
from interp.saes import reconstruct
from interp.stats.lstsq import LstsqSolution, StreamingLstsq, accumulate_from_cache

_F64 = torch.float64


@dataclass
class StreamedLinearError:
    """The fit plus the in-sample sums (float64): per-dim SS of SaeError around its mean and of the residual
    SaeError − LinearError, and Σ‖x − x̄‖² and Σ‖SaeError‖² for the FVUs."""

    solution: LstsqSolution
    n: int
    ss_tot: torch.Tensor  # [d]
    ss_res: torch.Tensor  # [d]
    ss_x: float
    ss_err: float

    @property
    def r2_per_dim(self) -> torch.Tensor:
        return torch.where(self.ss_tot > 0, 1 - self.ss_res / self.ss_tot.clamp_min(1e-300),
                           torch.full_like(self.ss_tot, float("nan")))

    @property
    def r2(self) -> float:
        """In-sample R² of SaeError from x, mean over dims (method's default convention)."""
        return float(torch.nanmean(self.r2_per_dim))

    @property
    def fvu_sae(self) -> float:
        return self.ss_err / self.ss_x

    @property
    def fvu_sae_plus_linear(self) -> float:
        return float(self.ss_res.sum()) / self.ss_x


def _row_range(rows: int | tuple[int, int] | None) -> tuple[int, int | None]:
    if rows is None:
        return 0, None
    if isinstance(rows, int):
        return 0, rows
    return int(rows[0]), int(rows[1])


def fit_linear_error_from_cache(cache: Any, hook: str, sae: Any, *, rows: int | tuple[int, int] | None = None,
                                batch_size: int = 16_384, fit_intercept: bool = True, ridge: float = 0.0,
                                rank: int | None = None, world: int | None = None) -> StreamedLinearError:
    """Regress SaeError = x − Sae(x) on x over `rows` of a cache (None: all; n: the first n; (start, stop)).

    The same fit as method.decompose_sae_error on those rows (x in float32, Sae(x) from interp.saes.reconstruct),
    accumulated in float64. rank/world as in interp.stats.lstsq.lstsq_from_cache.
    """
    rank, world = data_split(rank, world)
    start, stop = _row_range(rows)
    device = next(sae.parameters()).device
    sq = []  # per-batch Σe² per dim, for SS_tot of the target

    def transform(x: torch.Tensor, _: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.reshape(x.shape[0], -1).float().to(device)
        err = x - reconstruct(sae, x)[0].to(device)
        sq.append(err.to(_F64).pow(2).sum(0))
        return x, err

    acc = accumulate_from_cache(cache, hook, start=start, stop=stop, batch_size=batch_size,
                                fit_intercept=fit_intercept, ridge=ridge, transform=transform, rank=rank, world=world,
                                device=device)
    syy = torch.stack(sq).sum(0) if sq else torch.zeros(acc.d_out, dtype=_F64, device=device)
    if world > 1:
        all_reduce_sum(syy)
    sol = acc.solve()
    return StreamedLinearError(solution=sol, n=acc.n, **_sums(acc, sol, syy))


def _sums(acc: StreamingLstsq, sol: LstsqSolution, syy: torch.Tensor) -> dict[str, Any]:
    """SS_tot, SS_res per dim and the FVU totals from the accumulated statistics (centred ones with an intercept)."""
    n = acc.n
    mx, my = acc.sx / n, acc.sy / n  # means of the shifted data: centring cancels the shift
    Sxx = acc.xtx - n * torch.outer(mx, mx)
    ey = acc.shift_y + my  # mean SaeError
    ss_tot = syy - n * ey ** 2
    if acc.fit_intercept:
        Sxy, Syy = acc.xty - n * torch.outer(mx, my), ss_tot
    else:  # uncentred statistics: the fit goes through the origin
        raw = acc.state()
        Sxx, Sxy, Syy = raw["xtx"], raw["xty"], syy
    W = sol.W
    ss_res = Syy - 2 * (W * Sxy).sum(0) + (W * (Sxx @ W)).sum(0)
    ss_x = float(torch.trace(acc.xtx - n * torch.outer(mx, mx)))
    return {"ss_tot": ss_tot, "ss_res": ss_res.clamp_min(0), "ss_x": ss_x, "ss_err": float(syy.sum())}
