"""Sparse gather/decode benchmark on one GPU: ceilings, correctness gates, then timings (issue 9, spec §2.4);
the input-sparse GEMV section lives in sparse_gemv.py, the timing helpers in gpu_timing.py.

Run: python benchmarks/sparse_gather.py --out DIR [--quick] [--sections gates,decode,sweep,linear,stream]
Writes DIR/sparse_gather.json (every number) and prints a summary table. Times are medians of CUDA-event
timings after warm-up (triton.testing.do_bench, which flushes L2 before every repetition: cold-L2 numbers);
'graph' numbers replay a CUDA graph of the call (launch overhead removed, L2 not flushed).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_timing import DEV, bench, log, rel_err  # noqa: E402
from sparse_gemv import linear  # noqa: E402

from interp.kernels import (  # noqa: E402
    SparseActs,
    decode,
    from_feature_major,
    gather_features,
    latent_stats,
    magnitude_threshold,
    sparse_linear,
    stream_to_device,
    to_column_major,
    to_feature_major,
)

RESULTS: dict = {"gates": {}, "decode_gate": {}, "decode_configs": [], "sweep": [], "linear": {}, "stream": {}}


def random_topk(n: int, d_sae: int, k: int, dtype: torch.dtype, seed: int = 0) -> SparseActs:
    """Random distinct ids per row (uniform over the dictionary) and positive values."""
    g = torch.Generator(device=DEV).manual_seed(seed)
    # distinct ids per row: random offsets + a random row shift keeps ids distinct and uniform
    base = torch.randperm(d_sae, device=DEV, generator=g)[:k].to(torch.int64)
    shift = torch.randint(0, d_sae, (n, 1), device=DEV, generator=g)
    idx = ((base[None, :] + shift) % d_sae).to(torch.int32)
    val = (torch.rand(n, k, device=DEV, generator=g) + 0.1).to(dtype)
    return SparseActs(idx, val, d_sae)



# ---------------------------------------------------------------------------------------------- ceilings
def ceilings() -> None:
    x = torch.empty(2 * 1024**3, dtype=torch.uint8, device=DEV)  # 2 GiB: far above L2
    y = torch.empty_like(x)
    ms = bench(lambda: y.copy_(x), rep=200)
    d2d = 2 * x.numel() / (ms * 1e-3) / 1e9
    h = torch.empty(1024**3, dtype=torch.uint8).pin_memory()
    dv = torch.empty(h.numel(), dtype=torch.uint8, device=DEV)
    ms_h = bench(lambda: dv.copy_(h, non_blocking=True), warmup=5, rep=200)
    h2d = h.numel() / (ms_h * 1e-3) / 1e9
    RESULTS["ceilings"] = {"d2d_GBps_read_plus_write": d2d, "h2d_pinned_GBps": h2d, "d2d_bytes": 2 * x.numel(),
                           "h2d_bytes": h.numel()}
    log(f"ceilings: D2D copy {d2d:.0f} GB/s (read+write), H2D pinned {h2d:.1f} GB/s")


# ---------------------------------------------------------------------------------------------- correctness gates
def gates() -> None:
    g = RESULTS["gates"]
    torch.manual_seed(0)
    # acceptance 1, GPU sizes: N=8192, d=4096, k=64, bf16 (+ fp32 sparsify sizes)
    s = random_topk(8192, 16384, 64, torch.bfloat16, seed=1)
    w = torch.randn(16384, 4096, device=DEV).bfloat16()
    rows = slice(0, 512)
    ref = SparseActs(s.idx[rows], s.val[rows], s.d_sae).to_dense(torch.float64) @ w.double()
    for be in ("triton", "embedding_bag", "dense"):
        out = decode(s, w, backend=be)[rows]
        ok = torch.allclose(out.double(), ref, atol=2e-2 * float(ref.abs().max()), rtol=2e-2)
        g[f"decode_bf16_{be}"] = {"rel_err": rel_err(out, ref), "pass": bool(ok)}
    for d in (48, 64, 4096, 1000):
        s32 = random_topk(64, 128 if d < 1000 else 16384, 10, torch.float32, seed=d)
        w32 = torch.randn(s32.d_sae, d, device=DEV)
        r = s32.to_dense(torch.float64) @ w32.double()
        out = decode(s32, w32, backend="triton")
        g[f"decode_fp32_d{d}"] = {"rel_err": rel_err(out, r), "pass": bool(torch.allclose(out.double(), r,
                                                                                          rtol=1.3e-6, atol=1e-5))}
    s16 = SparseActs(s.idx.cpu().to(torch.uint16).to(DEV), s.val, s.d_sae)
    g["decode_uint16_ids_eq_int32"] = {"pass": bool(torch.equal(decode(s16, w, backend="triton"),
                                                                decode(s, w, backend="triton")))}
    # gather_features bit-exact, feature-major round trip, stats triton == torch
    ids = torch.randint(0, 16384, (300,), device=DEV)
    gf = gather_features(s, ids, backend="triton")
    gd = gather_features(s, ids, backend="dense")
    g["gather_features_bitexact"] = {"pass": bool(torch.equal(gf.view(torch.int16), gd.view(torch.int16)))}
    small = SparseActs(s.idx[:2048], s.val[:2048], s.d_sae)
    back = from_feature_major(to_feature_major(small))
    same = torch.equal(back.idx, small.idx) and torch.equal(back.val, small.val)
    g["feature_major_round_trip"] = {"pass": bool(same)}
    st_t = latent_stats(small, 5, backend="triton")
    st_c = latent_stats(small, 5, backend="torch")
    same = torch.equal(st_t.count, st_c.count) and torch.equal(st_t.max, st_c.max)
    g["latent_stats_triton_eq_torch"] = {"pass": bool(same and torch.allclose(st_t.mean, st_c.mean, equal_nan=True))}
    # acceptance 4: sparse_linear == F.linear(x*mask, W), fp16, rel err < 1e-3
    wl = to_column_major(torch.randn(11008, 4096, device=DEV, dtype=torch.float16) / 64)
    for b in (1, 4):
        for sp in (0.0, 0.5, 0.9):
            x = torch.randn(b, 4096, device=DEV, dtype=torch.float16)
            t = magnitude_threshold(x, sp)
            y = sparse_linear(x, wl, threshold=t, backend="triton")
            ref = F.linear(x.double() * (x.abs() > t), wl.double())
            g[f"sparse_linear_b{b}_s{int(sp * 100)}"] = {"rel_err": rel_err(y, ref), "pass": rel_err(y, ref) < 1e-3}
    # launched early (PDL): a chain where each input is written by the kernel just before, eagerly and replayed
    # from a CUDA graph; every output must match its own input's reference (a GEMV reading x before the write
    # completes, or a reduction reading partials early, would not)
    xs = torch.empty(6, 1, 4096, device=DEV, dtype=torch.float16)
    ys = torch.empty(6, 1, 11008, device=DEV, dtype=torch.float16)

    def chain():
        for i in range(6):
            if i == 0:
                xs[0].normal_()
            else:
                torch.mul(xs[i - 1], -1.5, out=xs[i])
            ys[i] = sparse_linear(xs[i], wl, threshold=0.67, backend="triton")

    errs = []
    for mode in ("eager", "graph"):
        if mode == "graph":
            graph = torch.cuda.CUDAGraph()
            chain()  # warm up (compiles) outside the capture
            with torch.cuda.graph(graph):
                chain()
            graph.replay()
        else:
            chain()
        torch.cuda.synchronize()
        for i in range(6):
            xi = xs[i].double()
            errs.append(rel_err(ys[i], F.linear(xi * (xi.abs() > 0.67), wl.double())))
    g["sparse_linear_pdl_chain"] = {"max_rel_err": max(errs), "pass": max(errs) < 1e-3}
    bad = [k for k, v in g.items() if not v["pass"]]
    log(f"gates: {len(g) - len(bad)}/{len(g)} pass" + (f"; FAILED: {bad}" if bad else ""))
    for k, v in g.items():
        log(f"  {k}: {v}")


# ---------------------------------------------------------------------------------------------- decode
def decode_baselines(s: SparseActs, w: torch.Tensor, with_dense: bool, rep: int) -> dict:
    """Times (ms) of the toolkit kernel and the baselines of spec §2.4 on one problem."""
    t: dict = {}
    t["triton"] = bench(lambda: decode(s, w, backend="triton"), rep=rep)
    idx64, val = s.idx.long(), s.val.to(w.dtype)
    t["embedding_bag"] = bench(lambda: F.embedding_bag(idx64, w, mode="sum", per_sample_weights=val), rep=rep)
    n, k, d = s.n_rows, s.k, w.shape[1]
    if n * k * d * w.element_size() <= 20e9:
        t["index_select_sum"] = bench(lambda: (w.index_select(0, idx64.view(-1)).view(n, k, d) * val[..., None]).sum(1),
                                      rep=rep)
    if with_dense and n * s.d_sae * w.element_size() <= 12e9:
        acts = s.to_dense(w.dtype)
        t["dense_matmul_only"] = bench(lambda: acts @ w, rep=rep)
        t["dense_scatter_matmul"] = bench(lambda: s.to_dense(w.dtype) @ w, rep=rep)
        del acts
        try:
            crow = torch.arange(0, n * k + 1, k, device=DEV, dtype=torch.int64)
            csr = torch.sparse_csr_tensor(crow, idx64.view(-1), val.view(-1), size=(n, s.d_sae))
            t["torch_sparse_mm"] = bench(lambda: torch.sparse.mm(csr, w), rep=rep)
        except Exception as e:  # noqa: BLE001 - recorded, not fatal
            t["torch_sparse_mm"] = f"error: {type(e).__name__}: {str(e)[:120]}"
    return t


def traffic_bytes(n: int, k: int, d: int, esize: int) -> int:
    """Bytes a decode must move with no L2 reuse: W rows (N·k·d), ids + values, and the output."""
    return n * k * d * esize + n * k * (4 + esize) + n * d * esize


def decode_gate(quick: bool) -> None:
    n, k, d, d_sae = 65536, 32, 4096, 65536
    out = RESULTS["decode_gate"]
    d2d = RESULTS["ceilings"]["d2d_GBps_read_plus_write"]
    for dtype in (torch.bfloat16, torch.float16):
        s = random_topk(n, d_sae, k, dtype, seed=7)
        w = torch.randn(d_sae, d, device=DEV).to(dtype)
        t = decode_baselines(s, w, with_dense=dtype == torch.bfloat16, rep=200)
        byt = traffic_bytes(n, k, d, 2)
        bw = byt / (t["triton"] * 1e-3) / 1e9
        out[str(dtype).removeprefix("torch.")] = {"ms": t, "traffic_bytes": byt, "triton_GBps": bw,
                                                  "frac_of_d2d": bw / d2d,
                                                  "speedup_vs_embedding_bag": t["embedding_bag"] / t["triton"]}
        log(f"decode gate {dtype}: " + ", ".join(f"{a}={b:.3f}ms" if isinstance(b, float) else f"{a}={b}"
                                                  for a, b in t.items())
            + f" | triton {bw:.0f} GB/s = {bw / d2d:.1%} of D2D, {t['embedding_bag'] / t['triton']:.2f}x embedding_bag")
        if dtype == torch.bfloat16:  # tile sweep for the default choice
            blocks = [(128, 32, 1, 1), (256, 32, 1, 1), (256, 32, 2, 1), (512, 16, 1, 1), (512, 32, 1, 1),
                      (512, 16, 2, 1), (512, 32, 2, 1), (512, 32, 4, 1), (1024, 32, 2, 1), (1024, 32, 4, 1),
                      (1024, 16, 4, 1)] if not quick else [(512, 32, 2, 1)]
            for bd, bk, nw, rows in blocks:
                cfg = {"BLOCK_D": bd, "BLOCK_K": bk, "num_warps": nw, "ROWS": rows}
                ms = bench(lambda cfg=cfg, s=s, w=w: decode(s, w, backend="triton", config=cfg), rep=60)
                RESULTS["decode_configs"].append({"config": cfg, "ms": ms, "GBps": byt / (ms * 1e-3) / 1e9})
            best = min(RESULTS["decode_configs"], key=lambda r: r["ms"])
            log(f"  best decode tile: {best}")
            no_reuse(s, d, dtype, byt, d2d, out)
        del s, w
        torch.cuda.empty_cache()


def decode_tiles(quick: bool) -> None:
    """A few tiles on the gate problem, with L2 reuse possible (d_sae 65536) and impossible (d_sae 1M)."""
    n, k, d = 65536, 32, 4096
    d2d = RESULTS["ceilings"]["d2d_GBps_read_plus_write"]
    s = random_topk(n, 65536, k, torch.bfloat16, seed=7)
    big = SparseActs(s.idx.long() * 16 + torch.randint_like(s.idx.long(), 16), s.val, 1 << 20)
    byt = traffic_bytes(n, k, d, 2)
    rows = RESULTS.setdefault("decode_tiles", [])
    for d_sae, ss in ((65536, s), (1 << 20, big)):
        w = torch.randn(d_sae, d, device=DEV).bfloat16()
        for cfg in (None, {"BLOCK_D": 128, "BLOCK_K": 32, "num_warps": 1}, {"BLOCK_D": 256, "BLOCK_K": 32,
                    "num_warps": 1}, {"BLOCK_D": 512, "BLOCK_K": 32, "num_warps": 2}):
            ms = bench(lambda ss=ss, w=w, cfg=cfg: decode(ss, w, backend="triton", config=cfg), rep=200)
            bw = byt / (ms * 1e-3) / 1e9
            rows.append({"d_sae": d_sae, "config": cfg or "default", "ms": ms, "GBps": bw, "frac_of_d2d": bw / d2d})
            log(f"decode tile d_sae={d_sae} {cfg or 'default'}: {ms:.3f} ms = {bw:.0f} GB/s ({bw / d2d:.0%} of D2D)")
        ref_rows = slice(0, 256)
        sub = SparseActs(ss.idx[ref_rows], ss.val[ref_rows], d_sae)
        ref = sub.to_dense(torch.float64) @ w.double() if d_sae <= 65536 else None
        if ref is not None:
            rows.append({"d_sae": d_sae, "rel_err_default": rel_err(decode(sub, w, backend="triton"), ref)})
        del w
        torch.cuda.empty_cache()


def no_reuse(s: SparseActs, d: int, dtype: torch.dtype, byt: int, d2d: float, out: dict) -> None:
    """The gate problem on a 1M-latent dictionary (8.6 GB): no L2 reuse, every gathered row comes from HBM."""
    big = SparseActs(s.idx.long() * 16 + torch.randint_like(s.idx.long(), 16), s.val, 1 << 20)
    wbig = torch.randn(1 << 20, d, device=DEV, dtype=dtype)
    tb = {"triton": bench(lambda: decode(big, wbig, backend="triton"), rep=200)}
    ib, vb = big.idx.long(), big.val
    tb["embedding_bag"] = bench(lambda: F.embedding_bag(ib, wbig, mode="sum", per_sample_weights=vb), rep=200)
    bwb = byt / (tb["triton"] * 1e-3) / 1e9
    out["bfloat16_dsae_1M_no_L2_reuse"] = {"ms": tb, "triton_GBps": bwb, "frac_of_d2d": bwb / d2d,
                                           "speedup_vs_embedding_bag": tb["embedding_bag"] / tb["triton"]}
    log(f"  d_sae=1M (no L2 reuse): triton {tb['triton']:.3f} ms = {bwb:.0f} GB/s = {bwb / d2d:.1%} of D2D, "
        f"embedding_bag {tb['embedding_bag']:.3f} ms ({tb['embedding_bag'] / tb['triton']:.2f}x)")


def sweep(quick: bool) -> None:
    """Full matrix with baselines, or (SWEEP_TRITON_ONLY=1) the toolkit kernel alone at d_sae = 65536."""
    if os.environ.get("SWEEP_TRITON_ONLY"):
        for n, d, k in itertools.product((4096, 65536, 1 << 20), (512, 2048, 4096), (16, 32, 64, 128)):
            if n * k * d * 2 > 600e9:
                continue
            s = random_topk(n, 65536, k, torch.bfloat16, seed=n + d + k)
            w = torch.randn(65536, d, device=DEV).bfloat16()
            ms = bench(lambda s=s, w=w: decode(s, w, backend="triton"), rep=40 if n < (1 << 20) else 20)
            byt = traffic_bytes(n, k, d, 2)
            RESULTS["sweep"].append({"N": n, "d": d, "d_sae": 65536, "k": k, "ms": {"triton": ms},
                                     "traffic_bytes": byt, "triton_GBps": byt / (ms * 1e-3) / 1e9})
            log(f"N={n:>7} d={d:>4} k={k:>3}: triton {ms:.3f} ms ({byt / (ms * 1e-3) / 1e9:.0f} GB/s)")
        return sweep_fit()
    sweep_full(quick)


def sweep_fit() -> None:
    """Scaling sanity: triton time vs N·k·d traffic (R² of a least-squares line)."""
    xs = torch.tensor([r["traffic_bytes"] for r in RESULTS["sweep"]], dtype=torch.float64)
    ys = torch.tensor([r["ms"]["triton"] for r in RESULTS["sweep"]], dtype=torch.float64)
    a = torch.stack([xs, torch.ones_like(xs)], 1)
    coef = torch.linalg.lstsq(a, ys[:, None]).solution.flatten()
    r2 = 1 - float(((a @ coef - ys) ** 2).sum() / ((ys - ys.mean()) ** 2).sum())
    RESULTS["sweep_fit"] = {"ms_per_GB": float(coef[0]) * 1e9, "intercept_ms": float(coef[1]), "r2": r2}
    log(f"scaling: triton ms = {coef[0] * 1e9:.4f}·GB + {coef[1]:.4f}, R² = {r2:.4f}")


def sweep_full(quick: bool) -> None:
    """The matrix of spec §2.4 (bf16): triton vs embedding_bag (dense/index_select/sparse.mm where memory allows)."""
    ns = (4096, 65536, 1 << 20) if not quick else (4096, 65536)
    ds = (512, 2048, 4096)
    dsaes = (16384, 65536)
    ks = (16, 32, 64, 128)
    ws = {(ds_, d): torch.randn(ds_, d, device=DEV).bfloat16() for ds_ in dsaes for d in ds}
    for n, d, d_sae, k in itertools.product(ns, ds, dsaes, ks):
        if n * k * d * 2 > 600e9:  # > ~0.15 s per call
            continue
        s = random_topk(n, d_sae, k, torch.bfloat16, seed=n + d + k)
        w = ws[(d_sae, d)]
        t = decode_baselines(s, w, with_dense=n <= 65536 and (k == 32), rep=40 if n < (1 << 20) else 20)
        byt = traffic_bytes(n, k, d, 2)
        row = {"N": n, "d": d, "d_sae": d_sae, "k": k, "ms": t, "traffic_bytes": byt,
               "triton_GBps": byt / (t["triton"] * 1e-3) / 1e9}
        RESULTS["sweep"].append(row)
        log(f"N={n:>7} d={d:>4} d_sae={d_sae:>5} k={k:>3}: triton {t['triton']:.3f} ms ({row['triton_GBps']:.0f} GB/s) "
            f"emb_bag {t['embedding_bag']:.3f} ms" + (f" dense {t['dense_matmul_only']:.3f}" if "dense_matmul_only" in t
                                                     else ""))
        del s
    sweep_fit()


# ---------------------------------------------------------------------------------------------- streaming
def stream(quick: bool) -> None:
    """Stream top-k batches (uint16 ids + bf16 values, as on disk) from pinned host memory through decode."""
    k, d_sae, batch = 32, 65536, 1 << 20
    h2d = RESULTS["ceilings"]["h2d_pinned_GBps"]
    total_target = 2 * torch.cuda.get_device_properties(0).total_memory
    n_src = 8
    src = []
    for i in range(n_src):
        s = random_topk(batch, d_sae, k, torch.bfloat16, seed=100 + i)
        src.append(SparseActs(s.idx.cpu().to(torch.uint16).pin_memory(), s.val.cpu().pin_memory(), d_sae))
    per_batch = src[0].idx.numel() * 2 + src[0].val.numel() * 2
    res = RESULTS["stream"]
    for d in (64, 128, 256) if not quick else (64,):
        w = torch.randn(d_sae, d, device=DEV).bfloat16()
        dev = src[0].to(DEV)
        t_dec = bench(lambda dev=dev, w=w: decode(dev, w, backend="triton"), rep=50)
        t_h2d = per_batch / (h2d * 1e9) * 1e3
        n_batches = math.ceil(total_target / per_batch) if d == 64 else 200
        acc = torch.zeros(d, device=DEV, dtype=torch.float32)

        def batches(n_batches=n_batches):
            for i in range(n_batches):
                yield src[i % n_src]

        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for b in stream_to_device(batches(), DEV):
            acc += decode(b, w, backend="triton").float().sum(0)  # consume: a real reduction of the decode
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        streamed = n_batches * per_batch
        gbps = streamed / wall / 1e9
        res[f"d{d}"] = {"batches": n_batches, "bytes_streamed": streamed, "wall_s": wall, "GBps": gbps,
                        "frac_of_h2d": gbps / h2d, "decode_ms_per_batch": t_dec, "h2d_ms_per_batch": t_h2d,
                        "overlap_efficiency": max(t_dec, t_h2d) * n_batches / 1e3 / wall,
                        "checksum_finite": bool(torch.isfinite(acc).all())}
        log(f"stream d={d}: {streamed / 1e9:.0f} GB in {wall:.2f}s = {gbps:.1f} GB/s ({gbps / h2d:.0%} of H2D); "
            f"decode {t_dec:.2f} ms vs H2D {t_h2d:.2f} ms per batch; "
            f"overlap eff {res[f'd{d}']['overlap_efficiency']:.0%}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sections", default="gates,decode,linear,stream,sweep")
    args = ap.parse_args()
    import triton

    p = torch.cuda.get_device_properties(0)
    RESULTS["env"] = {"gpu": p.name, "sms": p.multi_processor_count, "mem_GB": p.total_memory / 1e9,
                      "L2_MB": getattr(p, "L2_cache_size", 0) / 1e6, "torch": torch.__version__,
                      "triton": triton.__version__, "cuda": torch.version.cuda, "argv": sys.argv}
    log(json.dumps(RESULTS["env"]))
    secs = args.sections.split(",")
    ceilings()
    t0 = time.time()
    sections = (("gates", gates), ("decode", decode_gate), ("decode_tiles", decode_tiles),
                ("linear", lambda quick: linear(RESULTS["linear"], quick)), ("stream", stream), ("sweep", sweep))
    for name, fn in sections:
        if name in secs:
            t = time.time()
            try:
                fn(args.quick) if name != "gates" else fn()
            except Exception as e:  # noqa: BLE001 - keep the other sections' numbers
                import traceback

                traceback.print_exc()
                RESULTS[f"{name}_error"] = f"{type(e).__name__}: {e}"
            log(f"[{name}: {time.time() - t:.1f}s]")
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "sparse_gather.json").write_text(json.dumps(RESULTS, indent=1, default=str))
            torch.cuda.empty_cache()
    log(f"total {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
