"""Triton kernels for sparse decode, column gather, segmented latent statistics and input-sparse GEMV.

Written against the triton 3.6/3.7 language subset that also runs under TRITON_INTERPRET=1 on the CPU.
All accumulation is float32; pointer offsets are int64 so N·d and d_sae·d beyond 2^31 do not overflow.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor


@triton.jit
def _row_range(crow_ptr, row, k, IS_CSR: tl.constexpr):
    """[start, end) of a row's entries: CSR offsets, or k per row for top-k."""
    if IS_CSR:
        start = tl.load(crow_ptr + row)
        end = tl.load(crow_ptr + row + 1)
    else:
        start = row * k
        end = start + k
    return start, end


# ---------------------------------------------------------------------------------------------- decode
@triton.jit
def _decode_kernel(idx_ptr, val_ptr, crow_ptr, w_ptr, bias_ptr, out_ptr,
                   n_rows, k, d, stride_w, stride_out,
                   IS_CSR: tl.constexpr, HAS_BIAS: tl.constexpr,
                   BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr, ROWS: tl.constexpr):
    """out[r, dtile] = Σ_j val[r, j] · W[idx[r, j], dtile]: gather a BLOCK_K × BLOCK_D tile of W rows at once."""
    pid_r = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = offs_d < d
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=dmask, other=0.0).to(tl.float32)
    for r in tl.static_range(ROWS):
        row = pid_r * ROWS + r
        if row < n_rows:
            start, end = _row_range(crow_ptr, row, k, IS_CSR)
            acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
            for s in range(start, end, BLOCK_K):
                offs_k = s + tl.arange(0, BLOCK_K)
                kmask = offs_k < end
                ids = tl.load(idx_ptr + offs_k, mask=kmask, other=0).to(tl.int64)
                vals = tl.load(val_ptr + offs_k, mask=kmask, other=0.0).to(tl.float32)
                w = tl.load(w_ptr + ids[:, None] * stride_w + offs_d[None, :],
                            mask=kmask[:, None] & dmask[None, :], other=0.0)
                acc += tl.sum(w.to(tl.float32) * vals[:, None], axis=0)
            if HAS_BIAS:
                acc += bias
            tl.store(out_ptr + row * stride_out + offs_d, acc.to(out_ptr.dtype.element_ty), mask=dmask)


def decode_config(d: int, k: int | None, esize: int = 2) -> dict:
    """Default tiles, from the H200 sweep (benchmarks/results/sparse_gather.md): 128-column tiles, one warp.

    Narrow tiles keep each program's gathered W slice small, so successive programs over one column tile
    share L2 (2.0 ms vs 2.5 ms for 512-column tiles at d_sae 65536) and still stream from HBM at full speed
    without reuse (3.84 vs 4.11 ms at d_sae 2^20). More warps than the tile needs split the K reduction
    across warps through shared memory: 4 warps on 512 columns ran 1.8x slower than 2.
    """
    block_d = min(triton.next_power_of_2(max(d, 16)), 128)
    block_k = min(triton.next_power_of_2(max(k or 32, 1)), 32)
    rows = 1 if d >= 256 else max(1, min(8, 256 // block_d))
    return {"BLOCK_D": block_d, "BLOCK_K": block_k, "ROWS": rows, "num_warps": 1 if esize <= 4 else 2}


def decode(idx: Tensor, val: Tensor, crow: Tensor | None, w: Tensor, bias: Tensor | None,
           out: Tensor, config: dict | None = None) -> Tensor:
    """Launch the decode kernel; `idx`/`val` flat contiguous, `w` `[d_sae, d]` with unit column stride."""
    n_rows, d = out.shape
    k = 0 if crow is not None else (idx.numel() // max(n_rows, 1))
    cfg = {**decode_config(d, None if crow is not None else k, w.element_size()), **(config or {})}
    grid = (triton.cdiv(n_rows, cfg["ROWS"]), triton.cdiv(d, cfg["BLOCK_D"]))
    if n_rows == 0:
        return out
    _decode_kernel[grid](idx, val, crow if crow is not None else idx, w, bias if bias is not None else w, out,
                         n_rows, k, d, w.stride(0), out.stride(0),
                         IS_CSR=crow is not None, HAS_BIAS=bias is not None,
                         BLOCK_K=cfg["BLOCK_K"], BLOCK_D=cfg["BLOCK_D"], ROWS=cfg["ROWS"],
                         num_warps=cfg["num_warps"])
    return out


# ---------------------------------------------------------------------------------------------- gather features
@triton.jit
def _gather_features_kernel(idx_ptr, val_ptr, crow_ptr, pos_ptr, out_ptr, n_rows, k, n_out,
                            IS_CSR: tl.constexpr, BLOCK_K: tl.constexpr):
    """out[r, pos[idx[r, j]]] = val[r, j] wherever the latent was requested (pos ≥ 0); values are copied as is."""
    row = tl.program_id(0).to(tl.int64)
    start, end = _row_range(crow_ptr, row, k, IS_CSR)
    for s in range(start, end, BLOCK_K):
        offs = s + tl.arange(0, BLOCK_K)
        m = offs < end
        ids = tl.load(idx_ptr + offs, mask=m, other=0).to(tl.int64)
        pos = tl.load(pos_ptr + ids, mask=m, other=-1)
        v = tl.load(val_ptr + offs, mask=m, other=0.0)
        hit = m & (pos >= 0)
        tl.store(out_ptr + row * n_out + pos.to(tl.int64), v, mask=hit)


def gather_features(idx: Tensor, val: Tensor, crow: Tensor | None, pos: Tensor, out: Tensor) -> Tensor:
    """Launch the column gather: `pos` maps latent id -> output column (or -1); `out` zero-filled `[N, n_out]`."""
    n_rows, n_out = out.shape
    if n_rows == 0 or n_out == 0:
        return out
    k = 0 if crow is not None else idx.numel() // n_rows
    block_k = min(triton.next_power_of_2(max(k, 16)), 128) if crow is None else 64
    _gather_features_kernel[(n_rows,)](idx, val, crow if crow is not None else idx, pos, out, n_rows, k, n_out,
                                       IS_CSR=crow is not None, BLOCK_K=block_k, num_warps=2)
    return out


# ---------------------------------------------------------------------------------------------- segmented stats
@triton.jit
def _segment_stats_kernel(offsets_ptr, vals_ptr, count_ptr, sum_ptr, max_ptr, BLOCK: tl.constexpr):
    """Per latent j over its CSC segment: number of nonzero entries, their sum, and the maximum value."""
    j = tl.program_id(0).to(tl.int64)
    start = tl.load(offsets_ptr + j)
    end = tl.load(offsets_ptr + j + 1)
    cnt = tl.zeros((BLOCK,), dtype=tl.int32)
    tot = tl.zeros((BLOCK,), dtype=tl.float32)
    mx = tl.full((BLOCK,), float("-inf"), dtype=tl.float32)
    for s in range(start, end, BLOCK):
        offs = s + tl.arange(0, BLOCK)
        m = offs < end
        v = tl.load(vals_ptr + offs, mask=m, other=0.0).to(tl.float32)
        nz = m & (v != 0.0)
        cnt += nz.to(tl.int32)
        tot += tl.where(nz, v, 0.0)
        mx = tl.maximum(mx, tl.where(nz, v, float("-inf")))
    tl.store(count_ptr + j, tl.sum(cnt, axis=0).to(tl.int64))
    tl.store(sum_ptr + j, tl.sum(tot, axis=0))
    tl.store(max_ptr + j, tl.max(mx, axis=0))


def segment_stats(offsets: Tensor, vals: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(count int64, sum fp32, max fp32 with -inf for silent latents) per CSC segment."""
    n = offsets.numel() - 1
    dev = offsets.device
    count = torch.zeros(n, dtype=torch.int64, device=dev)
    total = torch.zeros(n, dtype=torch.float32, device=dev)
    mx = torch.full((n,), float("-inf"), dtype=torch.float32, device=dev)
    if n:
        _segment_stats_kernel[(n,)](offsets, vals, count, total, mx, BLOCK=128, num_warps=4)
    return count, total, mx


from interp.kernels.triton_gemv import sparse_gemv, sparse_gemv_config  # noqa: E402,F401  (one import for callers)
