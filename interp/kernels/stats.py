"""Per-latent cache statistics (count, frequency, mean, max, top examples) via segmented reductions on the CSC form."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from interp.kernels.backend import choose, triton_kernels
from interp.kernels.gather import to_feature_major
from interp.kernels.types import FeatureMajor, SparseActs

STATS_BACKENDS = ("triton", "torch")


@dataclass
class LatentStats:
    """Statistics of each latent over N tokens; `top_rows`/`top_vals` are `[d_sae, n_top]` (row −1 = none)."""

    count: Tensor  # int64: tokens where the latent is nonzero
    frequency: Tensor  # float64: count / N
    mean: Tensor  # float64: mean nonzero activation (nan if it never fires)
    max: Tensor  # float32: max nonzero activation (-inf if it never fires)
    top_rows: Tensor
    top_vals: Tensor


def _segment_stats_torch(fm: FeatureMajor) -> tuple[Tensor, Tensor, Tensor]:
    lat = fm.latents()
    v = fm.vals.float()
    nz = v != 0
    count = torch.bincount(lat[nz], minlength=fm.d_sae)
    total = torch.zeros(fm.d_sae, dtype=torch.float32, device=v.device).index_add_(0, lat[nz], v[nz])
    mx = torch.full((fm.d_sae,), float("-inf"), device=v.device)
    mx = mx.scatter_reduce(0, lat[nz], v[nz], reduce="amax", include_self=True)
    return count, total, mx


def top_examples(fm: FeatureMajor, n_top: int) -> tuple[Tensor, Tensor]:
    """The n_top largest nonzero activations of each latent and their token rows (sorted descending)."""
    v = fm.vals.float()
    lat = fm.latents()
    keep = v != 0
    lat, v, rows = lat[keep], v[keep], fm.rows[keep]
    by_val = torch.sort(v, descending=True, stable=True).indices
    by_lat = torch.sort(lat[by_val], stable=True).indices  # latent-major, values descending inside
    order = by_val[by_lat]
    lat, v, rows = lat[order], v[order], rows[order]
    counts = torch.bincount(lat, minlength=fm.d_sae)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(lat.numel(), device=lat.device) - starts[lat]
    sel = rank < n_top
    top_rows = torch.full((fm.d_sae, n_top), -1, dtype=torch.int64, device=lat.device)
    top_vals = torch.full((fm.d_sae, n_top), float("nan"), dtype=torch.float32, device=lat.device)
    top_rows[lat[sel], rank[sel]] = rows[sel]
    top_vals[lat[sel], rank[sel]] = v[sel]
    return top_rows, top_vals


def latent_stats(s: SparseActs | FeatureMajor, n_top: int = 10, *, backend: str = "auto") -> LatentStats:
    """Count, frequency, mean, max and top-n examples of every latent (zeros stored by top-k rows are ignored)."""
    fm = s if isinstance(s, FeatureMajor) else to_feature_major(s)
    be = choose("latent_stats", backend, fm.offsets.device, STATS_BACKENDS, cpu_default="torch")
    if be == "triton":
        count, total, mx = triton_kernels().segment_stats(fm.offsets.contiguous(), fm.vals.contiguous())
    else:
        count, total, mx = _segment_stats_torch(fm)
    mean = total.double() / count.double()  # nan where count == 0, by design
    top_rows, top_vals = top_examples(fm, n_top)
    return LatentStats(count, count.double() / max(fm.n_rows, 1), mean, mx, top_rows, top_vals)
