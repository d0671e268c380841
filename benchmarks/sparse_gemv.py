"""Input-sparse GEMV benchmark (TEAL/CATS, issue 9): the toolkit's batch ≤ 4 kernels against cuBLAS, 4096 -> 11008
fp16, with the launch floor. Run through `benchmarks/sparse_gather.py --sections gates,linear` (gates check it
first; LINEAR_B1_ONLY=1 times one row only), which writes the numbers under "linear" in sparse_gather.json.
"""

from __future__ import annotations

import json
import os

import torch
import torch.nn.functional as F
from gpu_timing import DEV, bench, bench_graph, log, rel_err

from interp.kernels import magnitude_threshold, sparse_linear, to_column_major


def gemv_configs(m: int) -> list[dict]:
    """Batch-1 GEMV configs around the default (tensor-core kernel, 256 columns, 8 K-splits, chunks ≥ 75 % active
    streamed 32 rows per step, sparser ones compacted in registers 16 per step, PDL): the reduction alone launched
    early, 32-row steps, 4 K-splits; plus the session-2 masked and session-1 atomic kernels. Earlier grids (the
    session-3 sorted compaction, scratch compaction, the 6-tile x density x PDL grid) are in the
    results/sparse_gather_linear_s4_*.json files, from the commits that had those kernels."""
    best = {"KERNEL": "dot", "BLOCK_M": 16, "STREAM_M": 32, "BLOCK_N": 256, "SPLIT_K": 8, "num_warps": 4,
            "num_stages": 3, "DENSE_ABOVE": 0.75, "PDL": "both", "SUM_BLOCK": 128}
    around = [{}, {"PDL": True}, {"BLOCK_M": 32}, {"SPLIT_K": 4}]
    dot = [{**best, **d} for d in around]
    others = [{"KERNEL": "two_pass", "BLOCK_M": 16, "BLOCK_N": 128, "SPLIT_K": 32, "num_warps": 2},
              {"KERNEL": "atomic", "BLOCK_M": 128, "BLOCK_N": 64, "SPLIT_K": 8, "num_warps": 4}]
    return dot + others


def launch_floor() -> dict:
    """Graph-replayed time of the smallest launches (one tiny cuBLAS GEMV, one 1-program triton kernel): the
    fixed cost a kernel pays before any byte moves, against which a GEMV's floor is read."""
    from interp.kernels.triton_gemv import _sum_partials_kernel

    xs, ws = torch.randn(1, 16, device=DEV, dtype=torch.float16), torch.randn(16, 16, device=DEV, dtype=torch.float16)
    part, y = torch.zeros(1, 128, device=DEV), torch.empty(1, 128, device=DEV, dtype=torch.float16)

    def one():
        _sum_partials_kernel[(1,)](part, part, y, 128, SPLIT=1, HAS_BIAS=False, BLOCK=128, num_warps=1)

    res = {"cublas_16x16_ms": bench_graph(lambda: F.linear(xs, ws)), "triton_1_program_ms": bench_graph(one),
           "triton_2_programs_in_a_row_ms": bench_graph(lambda: (one(), one()))}
    log(f"launch floor (graph): cuBLAS 16x16 {res['cublas_16x16_ms'] * 1e3:.2f}us, triton 1 program "
        f"{res['triton_1_program_ms'] * 1e3:.2f}us, two in a row {res['triton_2_programs_in_a_row_ms'] * 1e3:.2f}us")
    return res


def linear(out: dict, quick: bool) -> None:
    """Batch ≤ 4 input-sparse GEMV vs dense F.linear, 4096 -> 11008 fp16.

    Timed by CUDA-graph replay over 4 weight copies in rotation (360 MB, 6x the L2, so a 50%-sparse pass
    cannot live in L2), divided by 4: the per-layer cost inside a graph-captured decode loop. Per-call
    event timings (launch overhead included, L2 flushed) are recorded too.
    """
    m, n, n_copies = 4096, 11008, 4
    out["launch_floor"] = launch_floor()
    w_rows = [torch.randn(n, m, device=DEV, dtype=torch.float16) / 64 for _ in range(n_copies)]
    w_cols = [to_column_major(w) for w in w_rows]

    def rot_dense(x):
        for w in w_rows:
            F.linear(x, w)

    def rot_sparse(x, t, cfg):
        for w in w_cols:
            sparse_linear(x, w, threshold=t, backend="triton", config=cfg)

    for b in (1, 2, 4) if not os.environ.get("LINEAR_B1_ONLY") else (1,):
        x = torch.randn(b, m, device=DEV, dtype=torch.float16)
        dense_g = bench_graph(lambda x=x: rot_dense(x)) / n_copies
        dense_call = bench(lambda x=x: F.linear(x, w_rows[0]), rep=100)
        res = {"dense_graph_ms": dense_g, "dense_call_ms": dense_call, "by_sparsity": {}}
        for sp in (0.0, 0.5, 0.9, 1.0):  # 1.0: every channel off, the kernel's fixed cost
            t = magnitude_threshold(x, sp) if sp < 1 else float(x.abs().max())
            masked_g = bench_graph(lambda x=x, t=t: [F.linear(x * (x.abs() > t), w) for w in w_rows]) / n_copies
            cfgs = gemv_configs(m) if (b == 1 and not quick) else [None]
            timed = []
            for cfg in cfgs:
                try:
                    ms = bench_graph(lambda x=x, t=t, cfg=cfg: rot_sparse(x, t, cfg), rep=30) / n_copies
                except Exception as e:  # noqa: BLE001 - e.g. out of shared memory for one tile
                    log(f"  config {cfg} failed: {type(e).__name__}: {str(e)[:100]}")
                    continue
                y = sparse_linear(x, w_cols[0], threshold=t, backend="triton", config=cfg)
                ref = F.linear(x.double() * (x.abs() > t), w_cols[0].double())
                err = rel_err(y, ref) if sp < 1 else float((y.double() - ref).abs().max())
                timed.append((ms, {**(cfg or {}), "rel_err": err}))
            timed.sort(key=lambda r: r[0])
            best_ms, best_cfg = timed[0]
            default_g = bench_graph(lambda x=x, t=t: rot_sparse(x, t, None)) / n_copies
            dense_again = bench_graph(lambda x=x: rot_dense(x)) / n_copies  # the baseline's drift within the run
            default_call = bench(lambda x=x, t=t: sparse_linear(x, w_cols[0], threshold=t, backend="triton"), rep=100)
            res["by_sparsity"][str(sp)] = {
                "dense_masked_graph_ms": masked_g, "default_graph_ms": default_g, "default_call_ms": default_call,
                "dense_graph_ms_again": dense_again,
                "best_graph_ms": best_ms, "best_config": best_cfg,
                "all_configs": [{"ms": a, "config": c} for a, c in timed] if len(timed) > 1 else [],
                "speedup_default": dense_g / default_g, "speedup_best": dense_g / best_ms,
                "speedup_default_per_call": dense_call / default_call}
            log(f"linear b={b} sparsity={sp:.0%}: dense {dense_g * 1e3:.1f}us (per call {dense_call * 1e3:.1f}) | "
                f"default {default_g * 1e3:.1f}us x{dense_g / default_g:.2f} (per call {default_call * 1e3:.1f}) | "
                f"best {best_ms * 1e3:.1f}us x{dense_g / best_ms:.2f} {best_cfg}")
        out[f"batch{b}"] = res
    # one fixed config must serve all sparsities: the best 50% time among configs with 0% ≤ 1.1x dense
    b1 = out["batch1"]
    if b1["by_sparsity"]["0.0"]["all_configs"]:
        by_cfg: dict = {}
        for sp in ("0.0", "0.5", "0.9"):
            for r in b1["by_sparsity"][sp]["all_configs"]:
                c = {k: v for k, v in r["config"].items() if k != "rel_err"}
                by_cfg.setdefault(json.dumps(c, sort_keys=True), {})[sp] = r["ms"]
        ok = sorted((v["0.5"], c, v) for c, v in by_cfg.items()
                    if len(v) == 3 and v["0.0"] <= 1.1 * b1["dense_graph_ms"])
        out["recommended_config"] = {"config": json.loads(ok[0][1]), "ms": ok[0][2]} if ok else None
        log(f"recommended single config: {out['recommended_config']}")
