"""Triton kernels for the input-sparse GEMV (TEAL/CATS): skip the weight rows whose input channel is off.

The weight is stored column-major (`Wt = W.t()`, `[in, out]` contiguous), so an inactive input channel skips a
contiguous row of memory. Written for the triton subset that also runs under TRITON_INTERPRET=1 on the CPU.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch import Tensor

try:  # programmatic dependent launch (triton ≥ 3.3); the kernels only call these when PDL is on
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait
except ImportError:  # pragma: no cover - older triton: PDL configs fall back to ordinary launches
    gdc_launch_dependents = gdc_wait = None


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
def _compact_step(x_ptr, wt_ptr, order, step_id, b, n_steps, pid_k, offs_n, nmask, stride_wm, K_PER: tl.constexpr):
    """Load step b of the compacted loop: its x values `[R, ACC_M]` and weight rows `[R, ACC_M, BLOCK_N]`
    (all masked off when b ≥ n_steps, so a prefetch past the end reads nothing)."""
    loc = tl.sum(tl.where(step_id == b, order, 0), axis=0)  # [R, ACC_M]: the b-th BLOCK_M active channels
    valid = (loc < K_PER) & (b < n_steps)
    rows = pid_k * K_PER + loc
    xv = tl.load(x_ptr + rows, mask=valid, other=0.0).to(tl.float32)
    w = tl.load(wt_ptr + rows[:, :, None].to(tl.int64) * stride_wm + offs_n[None, None, :],
                mask=valid[:, :, None] & nmask[None, None, :], other=0.0, eviction_policy="evict_first")
    return xv, w


@triton.jit
def _sparse_gemv_compact_kernel(x_ptr, wt_ptr, out_ptr, bias_ptr, y_ptr, count_ptr, M, N, stride_wm, threshold,
                                K_PER: tl.constexpr, SPLIT: tl.constexpr, HAS_BIAS: tl.constexpr,
                                FUSED: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                                ACC_M: tl.constexpr, PREFETCH: tl.constexpr):
    """One row, split-K over compacted channels: each program sorts its chunk's active channels to the front
    and loops over them only, so the loop length (not just the bytes) shrinks with sparsity.

    Masked loads alone skip the bytes but keep every step's latency; a latency-bound GEMV then runs no faster.
    Partials go to out[pid_k, ntile]. FUSED: the last program to finish a column tile (a per-tile counter)
    adds all partials in a fixed order (deterministic) and resets the counter; otherwise a second kernel does.
    """
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    nmask = offs_n < N
    local = tl.arange(0, K_PER)
    chunk = pid_k * K_PER + local
    xc = tl.load(x_ptr + chunk, mask=chunk < M, other=0.0).to(tl.float32)
    on = (tl.abs(xc) > threshold) & (chunk < M)
    n_on = tl.sum(on.to(tl.int32), axis=0)
    # active local indices first, in ascending order (inactive ones sort last as K_PER); each step takes BLOCK_M
    # of them as R = BLOCK_M // ACC_M row groups whose loads issue together and fold into one [ACC_M, N] sum
    R: tl.constexpr = BLOCK_M // ACC_M
    order = tl.reshape(tl.sort(tl.where(on, local, K_PER)), (K_PER // BLOCK_M, R, ACC_M))
    step_id = tl.arange(0, K_PER // BLOCK_M)[:, None, None]
    acc = tl.zeros((ACC_M, BLOCK_N), dtype=tl.float32)
    n_steps = tl.cdiv(n_on, BLOCK_M)
    if PREFETCH:  # software pipeline: step b+1's rows are in flight while step b's are multiplied in
        xv, w = _compact_step(x_ptr, wt_ptr, order, step_id, 0, n_steps, pid_k, offs_n, nmask, stride_wm, K_PER)
        for b in range(1, n_steps + 1):
            xv_next, w_next = _compact_step(x_ptr, wt_ptr, order, step_id, b, n_steps, pid_k, offs_n, nmask,
                                            stride_wm, K_PER)
            acc += tl.sum(w.to(tl.float32) * xv[:, :, None], axis=0)
            xv, w = xv_next, w_next
    else:
        for b in range(0, n_steps):
            xv, w = _compact_step(x_ptr, wt_ptr, order, step_id, b, n_steps, pid_k, offs_n, nmask, stride_wm,
                                  K_PER)
            acc += tl.sum(w.to(tl.float32) * xv[:, :, None], axis=0)
    part = tl.sum(acc, axis=0)
    if SPLIT == 1:
        if HAS_BIAS:
            part += tl.load(bias_ptr + offs_n, mask=nmask, other=0.0).to(tl.float32)
        tl.store(y_ptr + offs_n, part.to(y_ptr.dtype.element_ty), mask=nmask)
    else:
        tl.store(out_ptr + pid_k.to(tl.int64) * N + offs_n, part, mask=nmask)
        if FUSED:
            tl.debug_barrier()  # every thread's partial is written before the counter moves
            done = tl.atomic_add(count_ptr + pid_n, 1, sem="acq_rel")
            if done == SPLIT - 1:
                tot = tl.zeros((BLOCK_N,), dtype=tl.float32)
                for s in range(SPLIT):  # fixed order: the result does not depend on which program came last
                    tot += tl.load(out_ptr + s * N + offs_n, mask=nmask, other=0.0, cache_modifier=".cg")
                if HAS_BIAS:
                    tot += tl.load(bias_ptr + offs_n, mask=nmask, other=0.0).to(tl.float32)
                tl.store(y_ptr + offs_n, tot.to(y_ptr.dtype.element_ty), mask=nmask)
                tl.atomic_xchg(count_ptr + pid_n, 0)  # ready for the next call on this stream


@triton.jit
def _row0_dot(a, w, acc, IEEE: tl.constexpr):
    """acc += a @ w with x in row 0 of a: fp32 operands in IEEE fp32 (not tf32); bf16 widened where the
    interpreter cannot multiply it (IEEE is set for both by `_dot_in_fp32`)."""
    if IEEE:
        return tl.dot(a.to(tl.float32), w.to(tl.float32), acc, input_precision="ieee")
    return tl.dot(a, w, acc)


@triton.jit
def _active_order(on, K: tl.constexpr, LOG_K: tl.constexpr):
    """[K] int32: entry s is the local index of the s-th active channel (s < number active; later entries are
    unspecified). Binary lifting on the inclusive prefix count c: the answer for s is 1 + the largest i with
    c[i] ≤ s, found in log2(K) gathers, all in registers / shared memory."""
    count = tl.cumsum(on.to(tl.int32), axis=0)
    s = tl.arange(0, K)
    pos = tl.zeros((K,), dtype=tl.int32) - 1
    for b in tl.static_range(LOG_K):
        cand = pos + (K >> (b + 1))
        pos = tl.where(tl.gather(count, cand, axis=0) <= s, cand, pos)
    return pos + 1


@triton.jit
def _sparse_gemv_dot_kernel(x_ptr, wt_ptr, out_ptr, bias_ptr, y_ptr, idx_ptr, val_ptr, M, N, stride_wm, threshold,
                            K_PER: tl.constexpr, SPLIT: tl.constexpr, HAS_BIAS: tl.constexpr,
                            BLOCK_M: tl.constexpr, STREAM_M: tl.constexpr, BLOCK_N: tl.constexpr,
                            IEEE: tl.constexpr,
                            DENSE_MIN: tl.constexpr, PDL: tl.constexpr, PDL_WAIT: tl.constexpr,
                            GATHER: tl.constexpr,
                            LOG_K: tl.constexpr):
    """One row, split-K over compacted channels, as a pipelined tensor-core loop.

    The chunk's active channel ids are written in order to this program's own scratch row (prefix sum, no
    sort); the loop then streams their weight rows. Putting x in row 0 of a 16-row operand makes the step a
    `tl.dot`, which triton software-pipelines (loads several steps ahead), where an elementwise loop waits one
    memory latency per step. Rows 1-15 are zero, so summing the accumulator's rows gives x·W exactly.
    A chunk with at least DENSE_MIN active channels skips the compaction and streams all rows, masked, STREAM_M
    per step (BLOCK_M is the compacted loop's step).
    GATHER compacts in registers (binary search + tl.gather) instead of through a scratch buffer.
    """
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    nmask = offs_n < N
    if PDL_WAIT:  # launched early (PDL): nothing upstream may be read or overwritten before the wait
        gdc_wait()
    if PDL:
        gdc_launch_dependents()  # the reduction kernel may start launching; it waits (gdc_wait) for our stores
    chunk = pid_k * K_PER + tl.arange(0, K_PER)
    xc = tl.load(x_ptr + chunk, mask=chunk < M, other=0.0)
    on = (tl.abs(xc.to(tl.float32)) > threshold) & (chunk < M)
    n_on = tl.sum(on.to(tl.int32), axis=0)
    row0 = (tl.arange(0, 16) == 0)[:, None]
    acc = tl.zeros((16, BLOCK_N), dtype=tl.float32)
    if n_on >= DENSE_MIN:  # dense-ish chunk: stream every row in order, inactive ones masked (no compaction)
        for k0 in range(0, K_PER, STREAM_M):
            rows = pid_k * K_PER + k0 + tl.arange(0, STREAM_M)
            xk = tl.load(x_ptr + rows, mask=rows < M, other=0.0)
            onk = (tl.abs(xk.to(tl.float32)) > threshold) & (rows < M)
            a = tl.load(x_ptr + rows[None, :] + 0 * row0, mask=row0 & (rows < M)[None, :], other=0.0)
            a = tl.where(tl.abs(a.to(tl.float32)) > threshold, a, 0.0).to(a.dtype)
            w = tl.load(wt_ptr + rows[:, None].to(tl.int64) * stride_wm + offs_n[None, :],
                        mask=onk[:, None] & nmask[None, :], other=0.0, eviction_policy="evict_first")
            acc = _row0_dot(a, w, acc, IEEE)
    elif GATHER:  # compacted in registers: the s-th active channel found by binary search, no memory round trip
        local_of = _active_order(on, K_PER, LOG_K)
        for k0 in range(0, n_on, BLOCK_M):
            slot = k0 + tl.arange(0, BLOCK_M)
            smask = slot < n_on
            loc = tl.where(smask, tl.gather(local_of, tl.minimum(slot, K_PER - 1), axis=0), 0)
            xv = tl.gather(xc, loc, axis=0)
            a = tl.where(row0 & smask[None, :], xv[None, :], 0.0).to(xc.dtype)
            w = tl.load(wt_ptr + (pid_k * K_PER + loc)[:, None].to(tl.int64) * stride_wm + offs_n[None, :],
                        mask=smask[:, None] & nmask[None, :], other=0.0, eviction_policy="evict_first")
            acc = _row0_dot(a, w, acc, IEEE)
    else:
        slot_of = tl.cumsum(on.to(tl.int32), axis=0) - 1  # where each active channel goes in the compacted list
        scratch = idx_ptr + (pid_k * tl.num_programs(0) + pid_n).to(tl.int64) * K_PER
        vscratch = val_ptr + (pid_k * tl.num_programs(0) + pid_n).to(tl.int64) * K_PER
        tl.store(scratch + slot_of, chunk, mask=on)
        tl.store(vscratch + slot_of, xc, mask=on)  # the values too: the loop's loads then depend on no other load
        tl.debug_barrier()  # the compacted ids are visible to every thread of the program
        for k0 in range(0, n_on, BLOCK_M):
            slot = k0 + tl.arange(0, BLOCK_M)
            smask = slot < n_on
            rows = tl.load(scratch + slot, mask=smask, other=0)
            # x as row 0 of a [16, BLOCK_M] operand, loaded straight into that shape
            a = tl.load(vscratch + slot[None, :] + 0 * row0, mask=row0 & smask[None, :], other=0.0)
            w = tl.load(wt_ptr + rows[:, None].to(tl.int64) * stride_wm + offs_n[None, :],
                        mask=smask[:, None] & nmask[None, :], other=0.0, eviction_policy="evict_first")
            acc = _row0_dot(a, w, acc, IEEE)
    part = tl.sum(acc, axis=0)
    if SPLIT == 1:
        if HAS_BIAS:
            part += tl.load(bias_ptr + offs_n, mask=nmask, other=0.0).to(tl.float32)
        tl.store(y_ptr + offs_n, part.to(y_ptr.dtype.element_ty), mask=nmask)
    else:
        tl.store(out_ptr + pid_k.to(tl.int64) * N + offs_n, part, mask=nmask)


@triton.jit
def _sum_partials_kernel(part_ptr, bias_ptr, y_ptr, N, SPLIT: tl.constexpr, HAS_BIAS: tl.constexpr,
                         BLOCK: tl.constexpr, PDL: tl.constexpr = False):
    """y[n] = Σ_s part[s, n] (+ bias[n]), cast to y's dtype: the deterministic second pass of split-K.
    PDL: launched early (programmatic dependent launch) and waits here until the partials are written."""
    if PDL:
        gdc_wait()
        gdc_launch_dependents()
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for s in tl.static_range(SPLIT):
        acc += tl.load(part_ptr + s * N + offs, mask=mask, other=0.0)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + offs, acc.to(y_ptr.dtype.element_ty), mask=mask)


_COUNTERS: dict[tuple[str, int], Tensor] = {}


def _tile_counters(device: torch.device, n: int) -> Tensor:
    """Per-column-tile arrival counters for the fused reduction, zeroed once and reset by the kernel itself.

    One buffer per device: calls on one stream are ordered, but two streams running the fused kernel at once
    would share counters, so the fused reduction is opt-in (config REDUCE='fused').
    """
    key = (str(device), n)
    if key not in _COUNTERS:
        _COUNTERS[key] = torch.zeros(n, dtype=torch.int32, device=device)
    return _COUNTERS[key]


def _pdl_available(x: Tensor) -> bool:
    """Programmatic dependent launch needs a Hopper-or-newer GPU, a triton that has gdc_wait, and no
    interpreter (it has no inline PTX)."""
    return (gdc_wait is not None and x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1"
            and torch.cuda.get_device_capability(x.device)[0] >= 9)


def _dot_in_fp32(dtype: torch.dtype) -> bool:
    """fp32 operands multiply in IEEE fp32 (not tf32); under TRITON_INTERPRET bf16 is widened too, because the
    interpreter's dot multiplies bf16 bit patterns as integers (triton 3.6-3.7, runtime/interpreter.py)."""
    return dtype == torch.float32 or (dtype == torch.bfloat16 and os.environ.get("TRITON_INTERPRET") == "1")


def _sparse_gemv_two_pass(x: Tensor, wt: Tensor, bias: Tensor | None, threshold: float, cfg: dict) -> Tensor:
    """Batch-1 GEMV: a partial kernel per (column tile, K chunk), then one small reduction kernel (or, with the
    compact kernel and REDUCE='fused', the last program of each column tile reduces)."""
    m, n = x.shape[1], wt.shape[1]
    bm, bn = int(cfg["BLOCK_M"]), int(cfg["BLOCK_N"])
    compact = cfg.get("KERNEL") in ("compact", "dot")
    k_per = triton.cdiv(triton.cdiv(m, max(1, int(cfg["SPLIT_K"]))), bm) * bm
    if compact:  # the sort / prefix sum needs a power-of-two chunk
        k_per = max(bm, triton.next_power_of_2(triton.cdiv(m, max(1, int(cfg["SPLIT_K"])))))
    split = triton.cdiv(m, k_per)
    y = torch.empty(1, n, dtype=x.dtype, device=x.device)
    out = y if split == 1 else torch.empty(split, n, dtype=torch.float32, device=x.device)
    b = bias if bias is not None else wt
    launch = {"num_warps": int(cfg["num_warps"])}
    if "num_stages" in cfg:
        launch["num_stages"] = int(cfg["num_stages"])
    fused = cfg.get("KERNEL") == "compact" and split > 1 and cfg.get("REDUCE") == "fused"
    pdl = bool(cfg.get("PDL", False)) and split > 1 and cfg.get("KERNEL") == "dot" and _pdl_available(x)
    # PDL="both": the GEMV itself also launches while the previous kernel finishes, and waits before reading x
    pdl_first = pdl and cfg.get("PDL") == "both"
    if cfg.get("KERNEL") == "dot":
        n_tiles = triton.cdiv(n, bn)
        gather = bool(cfg.get("GATHER", False))  # compaction in registers needs no scratch rows
        scratch = out if gather else torch.empty(split * n_tiles * k_per, dtype=torch.int32, device=x.device)
        vscratch = x if gather else torch.empty(split * n_tiles * k_per, dtype=x.dtype, device=x.device)
        _sparse_gemv_dot_kernel[(n_tiles, split)](
            x, wt, out, b, y, scratch, vscratch, m, n, wt.stride(0), float(threshold), K_PER=k_per, SPLIT=split,
            HAS_BIAS=bias is not None, BLOCK_M=bm, STREAM_M=min(k_per, int(cfg.get("STREAM_M", bm))), BLOCK_N=bn,
            IEEE=_dot_in_fp32(x.dtype),
            DENSE_MIN=int(float(cfg.get("DENSE_ABOVE", 2.0)) * k_per), PDL=pdl, PDL_WAIT=pdl_first,
            GATHER=gather, LOG_K=k_per.bit_length() - 1, **launch, **({"launch_pdl": True} if pdl_first else {}))
    elif compact:
        counters = _tile_counters(x.device, triton.cdiv(n, bn)) if fused else out
        _sparse_gemv_compact_kernel[(triton.cdiv(n, bn), split)](
            x, wt, out, b, y, counters, m, n, wt.stride(0), float(threshold), K_PER=k_per, SPLIT=split,
            HAS_BIAS=bias is not None, FUSED=fused, BLOCK_M=bm, BLOCK_N=bn,
            ACC_M=min(bm, int(cfg.get("ACC_M", 16))), PREFETCH=bool(cfg.get("PREFETCH", False)), **launch)
    else:
        n_tiles = max(1, int(cfg.get("N_TILES", 1)))
        _sparse_gemv_partial_kernel[(triton.cdiv(n, bn * n_tiles), split)](
            x, wt, out, b, m, n, wt.stride(0), float(threshold), K_PER=k_per,
            HAS_BIAS=bias is not None and split == 1, BLOCK_M=bm, BLOCK_N=bn, N_TILES=n_tiles, **launch)
    if split > 1 and not fused:
        blk = int(cfg.get("SUM_BLOCK", 1024))
        extra = {"PDL": True, "launch_pdl": True} if pdl else {}
        _sum_partials_kernel[(triton.cdiv(n, blk),)](out, b, y, n, SPLIT=split, HAS_BIAS=bias is not None,
                                                     BLOCK=blk, num_warps=4 if blk >= 512 else 1, **extra)
    return y


def sparse_gemv_config(batch: int, m: int, n: int) -> dict:
    """Default tiles for the input-sparse GEMV (H200 sweeps for 4096 × 11008; see benchmarks/results).

    One row: the tensor-core kernel, 256 columns per program, 8 K-splits, 4 warps; chunks with ≥ 75 % of
    channels active stream every row (masked, 32 per step), sparser ones are compacted in registers (16 active
    rows per step); on Hopper the GEMV and its reduction are launched early (PDL) and wait for their inputs.
    Best single config on an H200 (session 4, two runs: 24.2-24.4 / 15.2 / 5.7-5.8 µs at 0 / 50 / 90 %
    sparsity against cuBLAS's dense 24.7 µs; benchmarks/results/sparse_gather.md). 2-4 rows: the atomic kernel.
    """
    if batch == 1:
        return {"KERNEL": "dot", "BLOCK_M": 16, "STREAM_M": 32, "BLOCK_N": 256,
                "SPLIT_K": max(1, min(8, m // 512)), "num_warps": 4, "num_stages": 3, "SUM_BLOCK": 128,
                "DENSE_ABOVE": 0.75, "PDL": "both", "GATHER": True}
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
    if bsz == 1 and cfg.get("KERNEL") in ("two_pass", "compact", "dot"):
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
