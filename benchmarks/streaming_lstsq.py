"""Streaming least squares from an on-disk interp cache vs in-memory torch.linalg.lstsq (time, peak memory).

    python benchmarks/streaming_lstsq.py --cache /tmp/lstsq_cache --tokens 1048576

Builds (once) an interp cache with `interp.extract` from a cheap stand-in model (random one-layer attention-only
transformer, d = 128; X = hook_embed, Y = blocks.0.hook_resid_post, float32) over the held-out corpus repeated; the
4-layer default model's forward over 1M tokens would cost far more than the regression being measured.
Then, for several N, runs each method
in a fresh subprocess and records wall time and the process's peak RSS (VmHWM):
    stream   interp.stats.StreamingLstsq over 65,536-row batches read from the cache (float64 XᵀX, XᵀY)
    inmem64  read all rows, torch.linalg.lstsq([X, 1], Y) in float64 (what a careful in-memory fit does)
    inmem32  the same in float32 (the reference code's choice)
and the relative difference of each solution from the streaming one. Results: benchmarks/results/streaming_lstsq.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HOOK_X, HOOK_Y = "hook_embed", "blocks.0.hook_resid_post"


def _stand_in_model():
    """A random-weight one-layer attention-only HookedTransformer, d = 128, with the embedded tokenizer."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from interp.models import load_tokenizer

    tok = load_tokenizer("toy-pythia-4l")
    cfg = HookedTransformerConfig(n_layers=1, d_model=128, n_heads=4, d_head=32, d_vocab=len(tok), n_ctx=128,
                                  attn_only=True, normalization_type="LN", positional_embedding_type="rotary",
                                  rotary_dim=8, seed=0, device="cpu", default_prepend_bos=False)
    return HookedTransformer(cfg, tokenizer=tok).eval()


def build_cache(path: Path, tokens: int) -> None:
    """Extract the two hooks for `tokens` tokens (held-out corpus, repeated as needed) with interp.extract."""
    from interp.extract import ExtractConfig, extract
    from interp.sources import iter_texts

    texts = list(iter_texts("embedded"))
    reps = max(1, -(-tokens // 130_000))
    extract(ExtractConfig(out=str(path), hooks=[HOOK_X, HOOK_Y], data=texts * reps, tokens=tokens, batch_size=64),
            model=_stand_in_model(), progress=False)


def _vm_hwm_mb() -> float:
    """Peak resident memory of this process image (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_anon_mb() -> float:
    """Current anonymous resident memory (excludes the cache's memory-mapped file pages, which are reclaimable)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(method: str, cache: str, n: int, out: str) -> None:
    """One measurement in this (fresh) process; writes W, b and timings as JSON-able numbers to `out`."""
    import torch

    from interp.cache import open_cache
    from interp.stats.lstsq import StreamingLstsq

    torch.set_num_threads(2)
    reader = open_cache(cache)
    rows, per_row = n, 1
    import threading

    rss0 = _vm_hwm_mb()
    anon = {"peak": _rss_anon_mb(), "stop": False}

    def sample() -> None:  # anonymous-memory high-water mark, sampled every 20 ms
        while not anon["stop"]:
            anon["peak"] = max(anon["peak"], _rss_anon_mb())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    if method == "stream":
        acc = StreamingLstsq(128, 128, fit_intercept=True)
        step = max(1, 65_536 // per_row)
        for s in range(0, rows, step):
            e = min(rows, s + step)
            acc.update(reader.read(HOOK_X, s, e).reshape(-1, 128), reader.read(HOOK_Y, s, e).reshape(-1, 128))
        sol = acc.solve()
        W, b = sol.W, sol.b
    else:
        dt = torch.float64 if method == "inmem64" else torch.float32
        X = reader.read(HOOK_X, 0, rows).reshape(-1, 128).to(dt)
        Y = reader.read(HOOK_Y, 0, rows).reshape(-1, 128).to(dt)
        A = torch.cat([X, torch.ones(X.shape[0], 1, dtype=dt)], 1)
        del X
        sol = torch.linalg.lstsq(A, Y).solution
        W, b = sol[:-1].double(), sol[-1].double()
    secs = time.perf_counter() - t0
    peak = _vm_hwm_mb()
    anon["stop"] = True
    sampler.join()
    torch.save({"W": W, "b": b}, out)
    print(json.dumps({"seconds": secs, "peak_rss_mb": peak, "peak_anon_mb": anon["peak"], "baseline_rss_mb": rss0}))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cache", default="/tmp/lstsq_cache")
    p.add_argument("--tokens", type=int, default=1_048_576)
    p.add_argument("--sizes", type=int, nargs="*", default=[131_072, 262_144, 524_288, 1_048_576])
    p.add_argument("--worker", nargs=4, metavar=("METHOD", "CACHE", "N", "OUT"))
    p.add_argument("--json", default="")
    a = p.parse_args()
    if a.worker:
        worker(a.worker[0], a.worker[1], int(a.worker[2]), a.worker[3])
        return
    import torch

    cache = Path(a.cache)
    if not (cache / "manifest.json").is_file():
        t = time.perf_counter()
        build_cache(cache, a.tokens)
        print(f"built cache {cache} in {time.perf_counter() - t:.0f}s", flush=True)
    rows = []
    for n in a.sizes:
        sols = {}
        for method in ("stream", "inmem64", "inmem32"):
            out = f"/tmp/_lstsq_{method}_{n}.pt"
            env = {**os.environ, "OMP_NUM_THREADS": "2"}
            res = subprocess.run([sys.executable, __file__, "--worker", method, str(cache), str(n), out],
                                 capture_output=True, text=True, env=env)
            if res.returncode != 0:
                rows.append({"n": n, "method": method, "error": res.stderr.strip().splitlines()[-1:]})
                continue
            m = json.loads(res.stdout.strip().splitlines()[-1])
            sols[method] = torch.load(out, weights_only=True)
            os.unlink(out)
            rows.append({"n": n, "method": method, **m})
            print(rows[-1], flush=True)
        for r in rows:
            if r["n"] == n and r["method"] in sols and "stream" in sols:
                W0 = sols["stream"]["W"]
                diff = torch.linalg.norm(sols[r["method"]]["W"] - W0) / torch.linalg.norm(W0)
                r["rel_diff_W_vs_stream"] = float(diff)
    doc = {"machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores (shared)",
           "load_average_at_end": os.getloadavg(),
           "torch": torch.__version__, "cache": str(cache), "rows": rows}
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=2))
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
