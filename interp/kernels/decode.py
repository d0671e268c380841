"""Sparse decode `x̂[r] = Σ_j val[r, j] · W_dec[idx[r, j]] (+ bias)` with Triton, embedding_bag or dense backends."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from interp.errors import ConfigError
from interp.kernels.backend import choose, triton_kernels
from interp.kernels.types import SparseActs

DECODE_BACKENDS = ("triton", "embedding_bag", "dense")


def _check(s: SparseActs, W_dec: Tensor, bias: Tensor | None) -> None:
    if W_dec.dim() != 2 or W_dec.shape[0] != s.d_sae:
        raise ConfigError(f"W_dec has shape {tuple(W_dec.shape)} but the latents have d_sae={s.d_sae}",
                          hint="W_dec is [d_sae, d] (sae-lens layout)")
    if W_dec.device != s.device:
        raise ConfigError(f"W_dec is on {W_dec.device}, latents on {s.device}", hint="move both to one device")
    if bias is not None and bias.shape != (W_dec.shape[1],):
        raise ConfigError(f"bias shape {tuple(bias.shape)} != ({W_dec.shape[1]},)", hint="pass b_dec of size d")


def decode(s: SparseActs, W_dec: Tensor, bias: Tensor | None = None, *, backend: str = "auto",
           out_dtype: torch.dtype | None = None, config: dict | None = None) -> Tensor:
    """Reconstruct `[N, d]` from sparse latents; 'auto' = Triton on CUDA, embedding_bag elsewhere.

    Triton accumulates in float32 whatever the storage dtypes; `config` overrides its tile sizes.
    """
    _check(s, W_dec, bias)
    be = choose("decode", backend, s.device, DECODE_BACKENDS, cpu_default="embedding_bag")
    out_dtype = out_dtype or W_dec.dtype
    if be == "triton":
        w = W_dec if W_dec.stride(1) == 1 else W_dec.contiguous()
        out = torch.empty(s.n_rows, W_dec.shape[1], dtype=out_dtype, device=s.device)
        idx = s.flat_idx().contiguous()  # int32/int64/uint16 ids are all loaded natively
        crow = s.crow.contiguous() if s.crow is not None else None  # the kernels index with unit strides
        b = bias.contiguous() if bias is not None else None
        return triton_kernels().decode(idx, s.flat_val().contiguous(), crow, w, b, out, config)
    if be == "embedding_bag":
        # embedding_bag needs per-sample weights in the table dtype and int32/int64 ids
        idx = s.flat_idx().to(torch.int64)
        val = s.flat_val().to(W_dec.dtype)
        if s.is_csr:
            out = F.embedding_bag(idx, W_dec, s.crow.to(torch.int64), mode="sum", per_sample_weights=val,
                                  include_last_offset=True)
        else:
            out = F.embedding_bag(idx.view(s.n_rows, -1), W_dec, mode="sum", per_sample_weights=val.view(s.n_rows, -1))
    else:  # dense: scatter into [N, d_sae] then matmul
        out = s.to_dense(W_dec.dtype) @ W_dec
    if bias is not None:
        out = out + bias
    return out.to(out_dtype)


def decode_reference(s: SparseActs, W_dec: Tensor, bias: Tensor | None = None) -> Tensor:
    """Float64 dense reference `scatter(val) @ W_dec (+ bias)`, for tests and benchmark gates."""
    out = s.to_dense(torch.float64) @ W_dec.double()
    return out + bias.double() if bias is not None else out
