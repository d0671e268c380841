"""Encoders into sparse form: SAE top-k / threshold encodings and sparsification of dense latents."""

from __future__ import annotations

import torch
from torch import Tensor

from interp.errors import ConfigError
from interp.kernels.types import SparseActs


def _pre_acts(x: Tensor, W_enc: Tensor, b_enc: Tensor | None, b_dec: Tensor | None) -> Tensor:
    """SAE pre-activations `(x − b_dec) W_enc + b_enc` (sae-lens convention: W_enc is `[d_in, d_sae]`)."""
    if x.dim() != 2 or W_enc.dim() != 2 or x.shape[1] != W_enc.shape[0]:
        raise ConfigError(f"x {tuple(x.shape)} and W_enc {tuple(W_enc.shape)} do not compose",
                          hint="x is [N, d_in] and W_enc is [d_in, d_sae]")
    h = (x - b_dec) if b_dec is not None else x
    h = h.to(W_enc.dtype) @ W_enc
    return h + b_enc if b_enc is not None else h


def topk_from_dense(acts: Tensor, k: int, index_dtype: torch.dtype = torch.int32,
                    value_dtype: torch.dtype | None = None) -> SparseActs:
    """Keep the k largest entries of each row of dense latents `[N, d_sae]` (values as they are)."""
    if not 1 <= k <= acts.shape[-1]:
        raise ConfigError(f"k={k} outside [1, {acts.shape[-1]}]", hint="choose k ≤ d_sae")
    val, idx = torch.topk(acts, k, dim=-1, sorted=False)
    return SparseActs(idx.to(index_dtype), val.to(value_dtype or acts.dtype), int(acts.shape[-1]))


def threshold_from_dense(acts: Tensor, threshold: float = 0.0, index_dtype: torch.dtype = torch.int32,
                         value_dtype: torch.dtype | None = None) -> SparseActs:
    """CSR of the entries with |a| > threshold (built as mask → per-row counts → cumsum offsets)."""
    mask = acts.abs() > threshold
    counts = mask.sum(1)
    crow = torch.zeros(acts.shape[0] + 1, dtype=torch.int64, device=acts.device)
    torch.cumsum(counts, 0, out=crow[1:])
    _, cols = mask.nonzero(as_tuple=True)  # row-major order, so each row's entries are contiguous
    return SparseActs(cols.to(index_dtype), acts[mask].to(value_dtype or acts.dtype), int(acts.shape[-1]), crow)


def encode_topk(x: Tensor, W_enc: Tensor, b_enc: Tensor | None, k: int, *, b_dec: Tensor | None = None,
                relu: bool = True, index_dtype: torch.dtype = torch.int32,
                value_dtype: torch.dtype | None = None) -> SparseActs:
    """TopK SAE encoding: top-k of the pre-activations, then ReLU (sae-lens TopK order), as `[N, k]` idx/val."""
    h = _pre_acts(x, W_enc, b_enc, b_dec)
    s = topk_from_dense(h, k, index_dtype, value_dtype)
    if relu:
        s.val = s.val.relu()
    return s


def encode_threshold(x: Tensor, W_enc: Tensor, b_enc: Tensor | None, threshold: float, *,
                     b_dec: Tensor | None = None, relu: bool = True, index_dtype: torch.dtype = torch.int32,
                     value_dtype: torch.dtype | None = None) -> SparseActs:
    """Threshold encoding: ReLU pre-activations (or raw with relu=False) kept where |a| > threshold, as CSR."""
    h = _pre_acts(x, W_enc, b_enc, b_dec)
    if relu:
        h = h.relu()
    return threshold_from_dense(h, threshold, index_dtype, value_dtype)
