"""Streaming per-latent statistics of a sparse (top-k or CSR) latent hook: what the latent browser shows.

Three passes over the cache's shards, one shard in memory at a time (on the GPU when there is one):

1. count, sum, min and max of the nonzero activations and the top-k rows (`interp.kernels.latent_stats` per shard,
   merged with the running top-k by a stable sort of `[d_sae, 2k]`); with the SAE's dense hook also the sums that
   give each latent's Pearson correlation with the SAE-error norm ‖x − x̂‖ (x̂ = `interp.kernels.decode`). For a
   transcoder the dense rows are its OUTPUT hook's y and the norm is ‖y − ŷ‖ with ŷ = decode(f) (+ x W_skipᵀ from
   the input hook's dense rows x for a skip transcoder).
2. the activation histogram: `n_bins` equal-width bins on [min(0, min), max] per latent, exact counts.
3. quantile samples: the histogram's cumulative counts map each bin to one of `n_quantiles` activation-quantile
   bins (bin b goes to quantile ⌊n_q · (values below b) / count⌋); in every (latent, quantile) group the builder
   keeps the `per_quantile` rows of smallest pseudo-random priority `_priority(row)` (a fixed permutation of the
   rows, so a bottom-s sketch: a uniform sample without replacement that merges across shards and that a brute-force
   recomputation reproduces exactly).

Ties in the top-k are broken by the lower row first. Zeros stored by a top-k row (a clipped ReLU) count as not firing.

Memory: O(d_sae · (k_top + n_quantiles · per_quantile + n_bins)) numbers plus one shard's sparse rows (and its dense
hook rows for the error norm); nothing grows with the number of tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from interp.cache.sparse_formats import read_sparse
from interp.errors import ConfigError
from interp.kernels import SparseActs, decode, latent_stats, to_feature_major

MINSTD = 2_147_483_647  # 2^31 − 1: x ↦ 48271·x mod MINSTD permutes [1, MINSTD)


@dataclass
class LatentData:
    """What the browser shows of every latent (numpy, `d` = d_sae). Rows are global cache rows; −1 = none."""

    n_rows: int
    count: np.ndarray  # int64 [d]: rows where the latent is nonzero
    total: np.ndarray  # float64 [d]: sum of its nonzero activations
    lo: np.ndarray  # float64 [d]: histogram range start, min(0, min nonzero)
    hi: np.ndarray  # float64 [d]: histogram range end, max nonzero (0 if it never fires)
    top_rows: np.ndarray  # int64 [d, k_top], activation descending, ties by row ascending
    top_vals: np.ndarray  # float32 [d, k_top] (-inf where none)
    hist: np.ndarray  # int64 [d, n_bins]
    qbin: np.ndarray  # int16 [d, n_bins]: quantile bin of each histogram bin
    sample_rows: np.ndarray  # int64 [d, n_quantiles, per_quantile], ascending priority
    sample_vals: np.ndarray  # float32 [d, n_quantiles, per_quantile]
    err_corr: np.ndarray | None = None  # float64 [d]: Pearson r of activation (0 when off) with ‖x − x̂‖
    notes: list[str] = field(default_factory=list)

    @property
    def d_sae(self) -> int:
        return int(self.count.shape[0])

    @property
    def density(self) -> np.ndarray:
        return self.count / max(self.n_rows, 1)

    @property
    def mean(self) -> np.ndarray:
        """Mean nonzero activation (nan where the latent never fires)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.total / np.maximum(self.count, 1), np.nan)

    def quantile_range(self, j: int, q: int) -> tuple[float, float] | None:
        """Activation range [lo, hi] covered by quantile bin q of latent j (None when it holds no histogram bin)."""
        bins = np.nonzero(self.qbin[j] == q)[0]
        if not bins.size:
            return None
        width = (self.hi[j] - self.lo[j]) / self.hist.shape[1]
        return float(self.lo[j] + bins[0] * width), float(self.lo[j] + (bins[-1] + 1) * width)


def priority(rows: Tensor, seed: int = 0) -> Tensor:
    """A pseudo-random, collision-free int64 priority per global row (two MINSTD steps of a shifted row id)."""
    x = (rows + seed * 7919) % (MINSTD - 1) + 1
    x = (x * 48271) % MINSTD
    return (x * 48271) % MINSTD


def hist_bins(vals: Tensor, lo: Tensor, hi: Tensor, n_bins: int) -> Tensor:
    """Histogram bin of each value given its latent's [lo, hi] (float64, clamped; a zero-width range is bin 0)."""
    width = hi - lo
    width = torch.where(width > 0, width, torch.ones_like(width))
    b = torch.floor((vals.double() - lo) / width * n_bins).long()
    return b.clamp_(0, n_bins - 1)


def quantile_map(hist: np.ndarray, n_quantiles: int) -> np.ndarray:
    """Quantile bin of each histogram bin: ⌊n_q · (count in lower bins) / count⌋, capped at n_q − 1."""
    below = np.cumsum(hist, axis=1) - hist
    count = np.maximum(hist.sum(1, keepdims=True), 1)
    return np.minimum(n_quantiles * below // count, n_quantiles - 1).astype(np.int16)


def _entries(s: SparseActs, offset: int) -> tuple[Tensor, Tensor, Tensor]:
    """(latent, value as float32, global row) of every nonzero stored entry."""
    lat, val, row = s.flat_idx().long(), s.flat_val().float(), s.row_ids() + offset
    keep = val != 0
    return lat[keep], val[keep], row[keep]


def _group_bottom(groups: Tensor, keys: Tensor, n_groups: int, s: int) -> tuple[Tensor, Tensor]:
    """Per group, positions of the s entries of smallest key (keys < 2^31, unique): ([G, s] positions, valid)."""
    order = torch.sort(groups * MINSTD + keys).indices
    g = groups[order]
    counts = torch.bincount(g, minlength=n_groups)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(g.numel(), device=g.device) - starts[g]
    sel = rank < s
    pos = torch.full((n_groups, s), -1, dtype=torch.long, device=g.device)
    pos[g[sel], rank[sel]] = order[sel]
    return pos, pos >= 0


class Collector:
    """Runs the three passes; `shards()` yields `(row offset, SparseActs[, dense rows])` one shard at a time."""

    def __init__(self, reader: Any, hook: str, *, k_top: int = 20, n_bins: int = 64, n_quantiles: int = 8,
                 per_quantile: int = 4, device: str = "cpu", backend: str = "auto", seed: int = 0,
                 dense: tuple[Any, str] | None = None, sae_weights: dict[str, Tensor] | None = None,
                 dense_in: tuple[Any, str] | None = None):
        if min(k_top, n_bins, n_quantiles, per_quantile) < 1:
            raise ConfigError("k_top, n_bins, n_quantiles and per_quantile must be at least 1")
        self.reader, self.hook, self.device, self.backend, self.seed = reader, hook, torch.device(device), backend, seed
        self.k, self.n_bins, self.nq, self.s = k_top, n_bins, n_quantiles, per_quantile
        self.d = int(reader.spec(hook)["d_sae"])
        self.dense, self.w, self.dense_in = dense, sae_weights, dense_in
        if dense is not None and "W_skip" in (sae_weights or {}) and dense_in is None:
            raise ConfigError("a skip transcoder's prediction error needs its input hook's dense rows (dense_in)")

    def shards(self):
        r = self.reader
        for i in range(len(r.shards)):
            lo, hi = int(r.offsets[i]), int(r.offsets[i + 1])
            yield lo, read_sparse(r, self.hook, lo, hi).to(self.device)

    def _dense_rows(self, src: tuple[Any, str], lo: int, n: int) -> Tensor:
        dreader, dhook = src
        return dreader.read(dhook, lo, lo + n).to(self.device, torch.float32).reshape(n, -1)

    def _error_norm(self, s: SparseActs, lo: int) -> Tensor:
        """‖x − decode(f)‖ per row (a transcoder: ‖y − decode(f) − x W_skipᵀ‖, y the output hook's rows)."""
        x = self._dense_rows(self.dense, lo, s.n_rows)
        xhat = decode(s, self.w["W_dec"], self.w["b_dec"], backend=self.backend).float()
        if "W_skip" in self.w:
            xhat = xhat + self._dense_rows(self.dense_in, lo, s.n_rows) @ self.w["W_skip"].T
        return (x - xhat).double().norm(dim=1)

    def pass_stats(self) -> dict[str, Tensor]:
        d, k, dev = self.d, self.k, self.device
        count = torch.zeros(d, dtype=torch.int64, device=dev)
        total = torch.zeros(d, dtype=torch.float64, device=dev)
        vmin = torch.full((d,), float("inf"), dtype=torch.float64, device=dev)
        vmax = torch.full((d,), float("-inf"), dtype=torch.float64, device=dev)
        top_vals = torch.full((d, k), float("-inf"), device=dev)
        top_rows = torch.full((d, k), -1, dtype=torch.int64, device=dev)
        err = {n: torch.zeros(d if n in ("a", "aa", "ae") else (), dtype=torch.float64, device=dev)
               for n in ("a", "aa", "ae", "e", "ee")} if self.dense is not None else None
        for lo, s in self.shards():
            st = latent_stats(to_feature_major(s), n_top=k, backend=self.backend)
            count += st.count
            vmax = torch.maximum(vmax, st.max.double())
            lat, val, row = _entries(s, lo)
            total.index_add_(0, lat, val.double())
            vmin = vmin.scatter_reduce(0, lat, val.double(), reduce="amin")
            rows = torch.where(st.top_rows >= 0, st.top_rows + lo, st.top_rows)
            vals = torch.nan_to_num(st.top_vals, nan=float("-inf"))
            # running entries hold lower rows than this shard's: a stable sort keeps ties by row ascending
            order = torch.sort(torch.cat([top_vals, vals], 1), dim=1, descending=True, stable=True).indices[:, :k]
            top_vals = torch.cat([top_vals, vals], 1).gather(1, order)
            top_rows = torch.cat([top_rows, rows], 1).gather(1, order)
            if err is not None:
                e = self._error_norm(s, lo)
                err["a"].index_add_(0, lat, val.double())
                err["aa"].index_add_(0, lat, val.double() ** 2)
                err["ae"].index_add_(0, lat, val.double() * e[row - lo])
                err["e"] += e.sum()
                err["ee"] += (e * e).sum()
        fired = count > 0
        lo_ = torch.where(fired, torch.clamp(vmin, max=0.0), torch.zeros_like(vmin))
        hi_ = torch.where(fired, vmax, torch.zeros_like(vmax))
        return {"count": count, "total": total, "lo": lo_, "hi": hi_, "top_vals": top_vals, "top_rows": top_rows,
                "err": err}

    def pass_hist(self, lo: Tensor, hi: Tensor) -> Tensor:
        hist = torch.zeros(self.d * self.n_bins, dtype=torch.int64, device=self.device)
        for off, s in self.shards():
            lat, val, _ = _entries(s, off)
            b = hist_bins(val, lo[lat], hi[lat], self.n_bins)
            hist += torch.bincount(lat * self.n_bins + b, minlength=self.d * self.n_bins)
        return hist.view(self.d, self.n_bins)

    def pass_samples(self, lo: Tensor, hi: Tensor, qmap: Tensor) -> tuple[Tensor, Tensor]:
        G, s, dev = self.d * self.nq, self.s, self.device
        best_key = torch.full((G, s), MINSTD, dtype=torch.int64, device=dev)
        best_row = torch.full((G, s), -1, dtype=torch.int64, device=dev)
        best_val = torch.full((G, s), float("nan"), device=dev)
        for off, sp in self.shards():
            lat, val, row = _entries(sp, off)
            if not lat.numel():  # nothing fires in this shard
                continue
            b = hist_bins(val, lo[lat], hi[lat], self.n_bins)
            groups = lat * self.nq + qmap[lat, b].long()
            keys = priority(row, self.seed)
            pos, ok = _group_bottom(groups, keys, G, s)
            p = pos.clamp(min=0)
            k_new = torch.where(ok, keys[p], torch.full_like(keys[p], MINSTD))
            allk = torch.cat([best_key, k_new], 1)
            order = torch.sort(allk, dim=1).indices[:, :s]
            best_key = allk.gather(1, order)
            best_row = torch.cat([best_row, torch.where(ok, row[p], -1)], 1).gather(1, order)
            best_val = torch.cat([best_val, torch.where(ok, val[p], float("nan"))], 1).gather(1, order)
        return best_row.view(self.d, self.nq, s), best_val.view(self.d, self.nq, s)

    def run(self) -> LatentData:
        st = self.pass_stats()
        hist = self.pass_hist(st["lo"], st["hi"])
        qmap = quantile_map(hist.cpu().numpy(), self.nq)
        rows, vals = self.pass_samples(st["lo"], st["hi"], torch.from_numpy(qmap).to(self.device))
        cpu = {k: v.cpu().numpy() for k, v in st.items() if k != "err"}
        data = LatentData(self.reader.n_rows, cpu["count"], cpu["total"], cpu["lo"], cpu["hi"], cpu["top_rows"],
                          cpu["top_vals"], hist.cpu().numpy(), qmap, rows.cpu().numpy(), vals.cpu().numpy())
        if st["err"] is not None:
            data.err_corr = _pearson(st["err"], self.reader.n_rows)
        return data


def _pearson(m: dict[str, Tensor], n: int) -> np.ndarray:
    """Pearson r from running sums (activation a is 0 on rows where the latent is off)."""
    a, aa, ae, e, ee = (m[k].cpu().double() for k in ("a", "aa", "ae", "e", "ee"))
    cov = n * ae - a * e
    var = (n * aa - a * a) * (n * ee - e * e)
    r = torch.where(var > 0, cov / var.clamp(min=1e-300).sqrt(), torch.full_like(cov, float("nan")))
    return r.numpy()


def collect(reader: Any, hook: str, **kwargs: Any) -> LatentData:
    """All per-latent browser statistics of a sparse hook in three streaming passes (see the module docstring)."""
    return Collector(reader, hook, **kwargs).run()
