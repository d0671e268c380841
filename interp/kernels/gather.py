"""Column gathers (selected latents as dense columns), row gathers (selected tokens) and the feature-major index."""

from __future__ import annotations

import torch
from torch import Tensor

from interp.errors import ConfigError
from interp.kernels.backend import choose, triton_kernels
from interp.kernels.types import FeatureMajor, SparseActs

GATHER_BACKENDS = ("triton", "torch", "dense")


def _latent_ids(ids: Tensor | list[int], d_sae: int, device: torch.device) -> Tensor:
    ids = torch.as_tensor(ids, device=device).reshape(-1).long()
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= d_sae):
        raise ConfigError(f"latent ids outside [0, {d_sae})", hint="pass ids of latents in the dictionary")
    return ids


def gather_features(s: SparseActs, latent_ids: Tensor | list[int], *, backend: str = "auto") -> Tensor:
    """Dense `[N, len(latent_ids)]` = `s.to_dense()[:, latent_ids]`, the stored values copied bit for bit."""
    ids = _latent_ids(latent_ids, s.d_sae, s.device)
    be = choose("gather_features", backend, s.device, GATHER_BACKENDS, cpu_default="torch")
    if be == "dense":
        return s.to_dense()[:, ids]
    uniq, inverse = torch.unique(ids, return_inverse=True)  # repeated ids: gather once, then index the columns
    pos = torch.full((s.d_sae,), -1, dtype=torch.int32, device=s.device)
    pos[uniq] = torch.arange(uniq.numel(), dtype=torch.int32, device=s.device)
    out = torch.zeros(s.n_rows, uniq.numel(), dtype=s.val.dtype, device=s.device)
    flat_idx = s.flat_idx()
    if be == "triton":
        crow = s.crow.contiguous() if s.crow is not None else None  # the kernel indexes with unit strides
        triton_kernels().gather_features(flat_idx.contiguous(), s.flat_val().contiguous(), crow, pos, out)
    else:
        p = pos[flat_idx.long()]
        hit = p >= 0
        out[s.row_ids()[hit], p[hit].long()] = s.flat_val()[hit]
    return out if uniq.numel() == ids.numel() and bool((uniq == ids).all()) else out[:, inverse]


def gather_tokens(s: SparseActs, rows: Tensor | list[int]) -> SparseActs:
    """Sparse rows `rows` of `s` (same format), e.g. the tokens of a dashboard's examples."""
    rows = torch.as_tensor(rows, device=s.device).reshape(-1).long()
    if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= s.n_rows):
        raise ConfigError(f"token rows outside [0, {s.n_rows})", hint="pass row numbers of this cache")
    tix = s.token_index.index_select(0, rows) if s.token_index is not None else None
    if not s.is_csr:
        return SparseActs(s.idx.index_select(0, rows), s.val.index_select(0, rows), s.d_sae, None, tix)
    lens = s.row_lengths().index_select(0, rows)
    crow = torch.zeros(rows.numel() + 1, dtype=torch.int64, device=s.device)
    torch.cumsum(lens, 0, out=crow[1:])
    # source position of every output entry: start of its source row + offset inside the row
    starts = torch.repeat_interleave(s.crow[:-1].index_select(0, rows), lens)
    within = torch.arange(int(crow[-1]), device=s.device) - torch.repeat_interleave(crow[:-1], lens)
    src = starts + within
    return SparseActs(s.idx.index_select(0, src), s.val.index_select(0, src), s.d_sae, crow, tix)


def to_feature_major(s: SparseActs) -> FeatureMajor:
    """CSC index: entries sorted by (latent, token row) with per-latent offsets (stable sort of the flat ids)."""
    flat = s.flat_idx().long()
    order = torch.sort(flat, stable=True).indices  # rows are already ascending in flat order
    counts = torch.bincount(flat, minlength=s.d_sae)
    offsets = torch.zeros(s.d_sae + 1, dtype=torch.int64, device=s.device)
    torch.cumsum(counts, 0, out=offsets[1:])
    return FeatureMajor(offsets, s.row_ids()[order], s.flat_val()[order], order, s.n_rows, s.k,
                        s.crow.clone() if s.is_csr else None)


def from_feature_major(fm: FeatureMajor, index_dtype: torch.dtype = torch.int32) -> SparseActs:
    """Inverse of `to_feature_major`: scatter entries back to their row-major positions."""
    nnz = fm.rows.numel()
    idx = torch.empty(nnz, dtype=index_dtype, device=fm.rows.device)
    val = torch.empty(nnz, dtype=fm.vals.dtype, device=fm.rows.device)
    idx[fm.flat_pos] = fm.latents().to(index_dtype)
    val[fm.flat_pos] = fm.vals
    if fm.k is not None:
        return SparseActs(idx.view(fm.n_rows, fm.k), val.view(fm.n_rows, fm.k), fm.d_sae)
    return SparseActs(idx, val, fm.d_sae, fm.src_crow)
