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


# ---------------------------------------------------------------------------------------------- input-sparse GEMV
@triton.jit
def _sparse_gemv_kernel(x_ptr, wt_ptr, bias_ptr, y_ptr, B, M, N, stride_xb, stride_wm, stride_yb, k_per_split,
                        threshold, HAS_BIAS: tl.constexpr, ATOMIC: tl.constexpr,
                        BLOCK_B: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """y[b, ntile] (+)= Σ_m x[b, m]·[|x[b, m]| > t] · Wt[m, ntile], loading only rows m active for some b.

    Wt is the weight stored column-major (`[in, out]` contiguous), so a skipped input channel skips a
    contiguous row of memory (TEAL/CATS). Grid: (out tiles, split-K chunks); split-K > 1 uses atomic adds.
    """
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    nmask = offs_n < N
    offs_b = tl.arange(0, BLOCK_B)
    bmask = offs_b < B
    k_start = pid_k * k_per_split
    k_end = tl.minimum(k_start + k_per_split, M)
    # accumulate elementwise and reduce over the M axis once at the end (no per-step cross-thread reduction)
    if BLOCK_B == 1:
        acc2 = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for m0 in range(k_start, k_end, BLOCK_M):
            offs_m = m0 + tl.arange(0, BLOCK_M)
            mmask = offs_m < k_end
            x1 = tl.load(x_ptr + offs_m, mask=mmask, other=0.0, eviction_policy="evict_last").to(tl.float32)
            on1 = (tl.abs(x1) > threshold) & mmask
            w = tl.load(wt_ptr + offs_m[:, None].to(tl.int64) * stride_wm + offs_n[None, :],
                        mask=on1[:, None] & nmask[None, :], other=0.0, eviction_policy="evict_first")
            acc2 += w.to(tl.float32) * tl.where(on1, x1, 0.0)[:, None]
        acc = tl.sum(acc2, axis=0)[None, :]
    else:
        acc3 = tl.zeros((BLOCK_B, BLOCK_M, BLOCK_N), dtype=tl.float32)
        for m0 in range(k_start, k_end, BLOCK_M):
            offs_m = m0 + tl.arange(0, BLOCK_M)
            mmask = offs_m < k_end
            x = tl.load(x_ptr + offs_b[:, None] * stride_xb + offs_m[None, :],
                        mask=bmask[:, None] & mmask[None, :], other=0.0).to(tl.float32)
            on = tl.abs(x) > threshold
            x = tl.where(on, x, 0.0)
            active = (tl.max(on.to(tl.int32), axis=0) > 0) & mmask  # OR of the per-sample masks
            w = tl.load(wt_ptr + offs_m[:, None].to(tl.int64) * stride_wm + offs_n[None, :],
                        mask=active[:, None] & nmask[None, :], other=0.0, eviction_policy="evict_first")
            acc3 += x[:, :, None] * w.to(tl.float32)[None, :, :]
        acc = tl.sum(acc3, axis=1)
    if HAS_BIAS:
        b = tl.load(bias_ptr + offs_n, mask=nmask, other=0.0).to(tl.float32)
        acc += tl.where(pid_k == 0, 1.0, 0.0) * b[None, :]
    yp = y_ptr + offs_b[:, None] * stride_yb + offs_n[None, :]
    ymask = bmask[:, None] & nmask[None, :]
    if ATOMIC:
        tl.atomic_add(yp, acc.to(y_ptr.dtype.element_ty), mask=ymask)
    else:
        tl.store(yp, acc.to(y_ptr.dtype.element_ty), mask=ymask)


@triton.jit
def _sparse_gemv_partial_kernel(x_ptr, wt_ptr, out_ptr, bias_ptr, M, N, stride_wm, threshold,
                                K_PER: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr,
                                BLOCK_N: tl.constexpr, N_TILES: tl.constexpr):
    """One row, two-pass split-K: out[pid_k, ntile] = Σ_{m in chunk} x[m]·[|x[m]| > t]·Wt[m, ntile].

    The chunk's K_PER // BLOCK_M steps are unrolled, so every x load and masked W load can be issued before the
    first multiply (no x -> mask -> W latency chain per step); partial sums go to their own row of `out` with a
    plain store (no zeroing, no atomics) and `_sum_partials_kernel` adds them. With one split, `out` is y itself.
    """
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    for j in range(N_TILES):  # N_TILES > 1: one program walks longer contiguous pieces of its W rows
        offs_n = (pid_n * N_TILES + j) * BLOCK_N + tl.arange(0, BLOCK_N)
        nmask = offs_n < N
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for i in tl.static_range(K_PER // BLOCK_M):
            offs_m = pid_k * K_PER + i * BLOCK_M + tl.arange(0, BLOCK_M)
            mmask = offs_m < M
            x = tl.load(x_ptr + offs_m, mask=mmask, other=0.0).to(tl.float32)
            on = (tl.abs(x) > threshold) & mmask
            w = tl.load(wt_ptr + offs_m[:, None].to(tl.int64) * stride_wm + offs_n[None, :],
                        mask=on[:, None] & nmask[None, :], other=0.0, eviction_policy="evict_first")
            acc += w.to(tl.float32) * tl.where(on, x, 0.0)[:, None]
        part = tl.sum(acc, axis=0)
        if HAS_BIAS:
            part += tl.load(bias_ptr + offs_n, mask=nmask, other=0.0).to(tl.float32)
        tl.store(out_ptr + pid_k.to(tl.int64) * N + offs_n, part.to(out_ptr.dtype.element_ty), mask=nmask)


@triton.jit
def _sum_partials_kernel(part_ptr, bias_ptr, y_ptr, N, SPLIT: tl.constexpr, HAS_BIAS: tl.constexpr,
                         BLOCK: tl.constexpr):
    """y[n] = Σ_s part[s, n] (+ bias[n]), cast to y's dtype: the deterministic second pass of split-K."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for s in tl.static_range(SPLIT):
        acc += tl.load(part_ptr + s * N + offs, mask=mask, other=0.0)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + offs, acc.to(y_ptr.dtype.element_ty), mask=mask)


def _sparse_gemv_two_pass(x: Tensor, wt: Tensor, bias: Tensor | None, threshold: float, cfg: dict) -> Tensor:
    """Batch-1 GEMV: unrolled partial kernel per (column tile, K chunk), then one small reduction kernel."""
    m, n = x.shape[1], wt.shape[1]
    bm = int(cfg["BLOCK_M"])
    k_per = triton.cdiv(triton.cdiv(m, max(1, int(cfg["SPLIT_K"]))), bm) * bm
    split = triton.cdiv(m, k_per)
    y = torch.empty(1, n, dtype=x.dtype, device=x.device)
    out = y if split == 1 else torch.empty(split, n, dtype=torch.float32, device=x.device)
    b = bias if bias is not None else wt
    n_tiles = max(1, int(cfg.get("N_TILES", 1)))
    grid = (triton.cdiv(n, cfg["BLOCK_N"] * n_tiles), split)
    _sparse_gemv_partial_kernel[grid](x, wt, out, b, m, n, wt.stride(0), float(threshold), K_PER=k_per,
                                      HAS_BIAS=bias is not None and split == 1, BLOCK_M=bm,
                                      BLOCK_N=cfg["BLOCK_N"], N_TILES=n_tiles, num_warps=cfg["num_warps"])
    if split > 1:
        _sum_partials_kernel[(triton.cdiv(n, 1024),)](out, b, y, n, SPLIT=split, HAS_BIAS=bias is not None,
                                                      BLOCK=1024, num_warps=4)
    return y


def sparse_gemv_config(batch: int, m: int, n: int) -> dict:
    """Default tiles for the input-sparse GEMV (H200 sweeps for 4096 × 11008; see benchmarks/results).

    One row: the deterministic two-pass kernel, 16 × 128 tiles, 32 K-splits, 2 warps (best at 50 % and 90 % among
    86 configs in session 2; within 0.6 µs of the atomic kernel at 0 %). 2-4 rows: the atomic split-K kernel.
    """
    if batch == 1:
        return {"KERNEL": "two_pass", "BLOCK_M": 16, "BLOCK_N": 128, "SPLIT_K": max(1, min(32, m // 128)),
                "num_warps": 2, "FP16_ATOMIC": False}
    return {"KERNEL": "atomic", "BLOCK_M": 16, "BLOCK_N": 128, "SPLIT_K": max(1, min(8, m // 256)), "num_warps": 4,
            "FP16_ATOMIC": False}


def sparse_gemv(x: Tensor, wt: Tensor, bias: Tensor | None, threshold: float, config: dict | None = None) -> Tensor:
    """Launch the GEMV for x `[B ≤ 4, M]` and wt `[M, N]` (row stride ≥ N, unit column stride); returns `[B, N]`.

    Split-K partial sums are atomically added into a zeroed float32 buffer (then cast), or with
    FP16_ATOMIC straight into the float16 output (one kernel less; partial sums rounded to fp16).
    """
    bsz, m = x.shape
    n = wt.shape[1]
    cfg = {**sparse_gemv_config(bsz, m, n), **(config or {})}
    if bsz == 1 and cfg.get("KERNEL") == "two_pass":
        return _sparse_gemv_two_pass(x, wt, bias, threshold, cfg)
    split = max(1, int(cfg["SPLIT_K"]))
    k_per = triton.cdiv(triton.cdiv(m, split), cfg["BLOCK_M"]) * cfg["BLOCK_M"]
    split = triton.cdiv(m, k_per)
    atomic = split > 1
    direct = not atomic or (cfg.get("FP16_ATOMIC", False) and x.dtype == torch.float16)
    if atomic:
        y = torch.zeros(bsz, n, dtype=x.dtype if direct else torch.float32, device=x.device)
    else:
        y = torch.empty(bsz, n, dtype=x.dtype, device=x.device)
    grid = (triton.cdiv(n, cfg["BLOCK_N"]), split)
    _sparse_gemv_kernel[grid](x, wt, bias if bias is not None else wt, y, bsz, m, n, x.stride(0), wt.stride(0),
                              y.stride(0), k_per, float(threshold), HAS_BIAS=bias is not None, ATOMIC=atomic,
                              BLOCK_B=max(1, triton.next_power_of_2(bsz)), BLOCK_M=cfg["BLOCK_M"],
                              BLOCK_N=cfg["BLOCK_N"], num_warps=cfg["num_warps"])
    return y if direct else y.to(x.dtype)
