"""The speed activation sparsity buys (issue 24): batch-1 decode with TEAL-style input sparsity through
`interp.kernels.sparse_linear`, against the same decode with dense `F.linear`, side by side in one process.

Two measurements, each a CUDA-graph replay (no launch gaps; the graph is what a fast decode loop runs):
  layer:  each Llama-7B projection shape (q/k/v/o 4096 -> 4096, gate/up 4096 -> 11008, down 11008 -> 4096), fp16,
          one row, the input thresholded at its |x| quantile for sparsity s; weights in rotation over copies
          larger than L2, so a sparse pass cannot live in cache.
  decode: a random-weight Llama-7B-shaped stack (32 layers, d 4096, d_ff 11008, 32 heads, fp16, static KV cache of
          `--ctx` positions, no rotary: its cost is negligible), one token per step; all seven projections of every
          layer sparse at s, thresholds calibrated per projection on dense steps (the realised sparsity is reported).
Variants are interleaved and repeated (medians). Targets (issue 24): layer >= 1.6x at 50 % and >= 0.9x at 0 %;
decode >= 1.3x at 50 %.

    python benchmarks/sparsity_speed.py --out benchmarks/results/sparsity_speed.json      # on a GPU
    python benchmarks/sparsity_speed.py --device cpu --tiny                                # correctness, any machine
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interp.kernels import magnitude_threshold, sparse_linear, to_column_major  # noqa: E402

SPARSITIES = (0.0, 0.3, 0.4, 0.5, 0.7)
LLAMA7B = {"d": 4096, "d_ff": 11008, "heads": 32, "layers": 32}
TINY = {"d": 64, "d_ff": 160, "heads": 4, "layers": 2}


def log(*a) -> None:
    print(*a, flush=True)


class Stack:
    """A Llama-shaped decoder stack with random weights: dense (row-major) and column-major copies of every
    projection, a static KV cache, and one decode step that uses either."""

    def __init__(self, shape: dict, ctx: int, device: str, dtype: torch.dtype, seed: int = 0):
        g = torch.Generator(device=device).manual_seed(seed)
        d, f, self.heads = shape["d"], shape["d_ff"], shape["heads"]
        self.dh = d // self.heads
        self.ctx, self.device, self.dtype = ctx, device, dtype

        def w(o, i):
            return (torch.randn(o, i, generator=g, device=device) / math.sqrt(i)).to(dtype)

        self.layers = []
        for _ in range(shape["layers"]):
            mats = {"q": w(d, d), "k": w(d, d), "v": w(d, d), "o": w(d, d), "gate": w(f, d), "up": w(f, d),
                    "down": w(d, f)}
            self.layers.append({"dense": mats, "col": {k: to_column_major(v) for k, v in mats.items()}})
        self.k_cache = torch.randn(shape["layers"], self.heads, ctx, self.dh, generator=g, device=device).to(dtype)
        self.v_cache = torch.randn(shape["layers"], self.heads, ctx, self.dh, generator=g, device=device).to(dtype)
        self.pos = torch.tensor(ctx // 2, device=device)
        self.thresholds = [dict.fromkeys(("qkv", "o", "gate_up", "down"), 0.0) for _ in self.layers]
        self.record: list[dict[str, list[torch.Tensor]]] | None = None

    def _proj(self, li: int, name: str, x: torch.Tensor, group: str, sparse: bool) -> torch.Tensor:
        if self.record is not None:
            self.record[li].setdefault(group, []).append(x.detach().float().cpu())
        if not sparse:
            return F.linear(x, self.layers[li]["dense"][name])
        backend = "triton" if self.device == "cuda" else "dense"
        return sparse_linear(x, self.layers[li]["col"][name], threshold=self.thresholds[li][group], backend=backend)

    def step(self, x: torch.Tensor, sparse: bool) -> torch.Tensor:
        """One decode step of the hidden state x [1, d] at position self.pos (the KV cache row is overwritten)."""
        mask = (torch.arange(self.ctx, device=self.device) <= self.pos)[None, None, None, :]
        for li in range(len(self.layers)):
            h = F.rms_norm(x, (x.shape[-1],))
            q, k, v = (self._proj(li, n, h, "qkv", sparse) for n in ("q", "k", "v"))
            self.k_cache[li].index_copy_(1, self.pos[None], k.view(self.heads, 1, self.dh))
            self.v_cache[li].index_copy_(1, self.pos[None], v.view(self.heads, 1, self.dh))
            att = F.scaled_dot_product_attention(q.view(1, self.heads, 1, self.dh), self.k_cache[li][None],
                                                 self.v_cache[li][None], attn_mask=mask)
            x = x + self._proj(li, "o", att.reshape(1, -1), "o", sparse)
            h = F.rms_norm(x, (x.shape[-1],))
            a = F.silu(self._proj(li, "gate", h, "gate_up", sparse)) * self._proj(li, "up", h, "gate_up", sparse)
            x = x + self._proj(li, "down", a, "down", sparse)
        return x

    def calibrate(self, sparsity: float, n_steps: int = 4) -> dict:
        """Per layer and projection group, the |x| quantile over dense steps; returns the realised sparsity."""
        self.record = [{} for _ in self.layers]
        x = torch.randn(1, self.layers[0]["dense"]["q"].shape[1], device=self.device, dtype=self.dtype)
        for _ in range(n_steps):
            x = self.step(x, sparse=False)
            x = x / x.norm() * math.sqrt(x.shape[-1])
        rec, self.record = self.record, None
        realised = []
        for li, groups in enumerate(rec):
            for group, xs in groups.items():
                vals = torch.cat([t.flatten() for t in xs])
                t = magnitude_threshold(vals, sparsity) if sparsity > 0 else 0.0
                self.thresholds[li][group] = t
                realised.append(float((vals.abs() <= t).float().mean()) if sparsity > 0 else 0.0)
        return {"realised_sparsity": statistics.mean(realised)}


def time_graph(fn, reps: int) -> float:
    """Median milliseconds of one replay of a CUDA graph of fn (or of a plain call on the CPU)."""
    if not torch.cuda.is_available():
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)
    from gpu_timing import bench_graph

    return bench_graph(fn, rep=reps)


def layer_speed(device: str, dtype: torch.dtype, shape: dict, reps: int, rounds: int) -> list[dict]:
    d, f = shape["d"], shape["d_ff"]
    rows = []
    l2 = 64 << 20
    for name, (n_out, n_in) in {"q/k/v/o": (d, d), "gate/up": (f, d), "down": (d, f)}.items():
        copies = max(2, math.ceil(3 * l2 / (n_out * n_in * 2)))
        ws = [torch.randn(n_out, n_in, device=device, dtype=dtype) / math.sqrt(n_in) for _ in range(copies)]
        cols = [to_column_major(w) for w in ws]
        x = torch.randn(1, n_in, device=device, dtype=dtype)
        backend = "triton" if device == "cuda" else "dense"
        for s in SPARSITIES:
            t = magnitude_threshold(x, s) if s > 0 else 0.0
            dense, sparse = [], []
            def run_dense(x=x, ws=ws):
                return [F.linear(x, w) for w in ws]

            def run_sparse(x=x, cols=cols, t=t, backend=backend):
                return [sparse_linear(x, w, threshold=t, backend=backend) for w in cols]

            for _ in range(rounds):  # interleaved
                dense.append(time_graph(run_dense, reps) / copies)
                sparse.append(time_graph(run_sparse, reps) / copies)
            ref = F.linear(x * (x.abs() > t), ws[0]).float()
            err = float((sparse_linear(x, cols[0], threshold=t, backend=backend).float() - ref).norm() / ref.norm())
            row = {"projection": name, "shape": [n_out, n_in], "sparsity": s, "dense_ms": statistics.median(dense),
                   "sparse_ms": statistics.median(sparse), "rel_err": err}
            row["speedup"] = row["dense_ms"] / row["sparse_ms"]
            rows.append(row)
            log(f"layer {name} s={s:.1f}: dense {row['dense_ms'] * 1e3:.1f}us sparse {row['sparse_ms'] * 1e3:.1f}us "
                f"-> {row['speedup']:.2f}x (rel err {err:.1e})")
    return rows


def decode_speed(device: str, dtype: torch.dtype, shape: dict, ctx: int, reps: int, rounds: int) -> list[dict]:
    stack = Stack(shape, ctx, device, dtype)
    x = torch.randn(1, shape["d"], device=device, dtype=dtype)
    rows = []
    for s in SPARSITIES:
        info = stack.calibrate(s)
        dense, sparse = [], []
        for _ in range(rounds):
            dense.append(time_graph(lambda: stack.step(x, False), reps))
            sparse.append(time_graph(lambda: stack.step(x, True), reps))
        row = {"sparsity": s, **info, "dense_ms_per_token": statistics.median(dense),
               "sparse_ms_per_token": statistics.median(sparse)}
        row["dense_tokens_per_s"] = 1e3 / row["dense_ms_per_token"]
        row["sparse_tokens_per_s"] = 1e3 / row["sparse_ms_per_token"]
        row["speedup"] = row["dense_ms_per_token"] / row["sparse_ms_per_token"]
        rows.append(row)
        log(f"decode s={s:.1f} (realised {info['realised_sparsity']:.3f}): dense {row['dense_tokens_per_s']:.1f} "
            f"tok/s, sparse {row['sparse_tokens_per_s']:.1f} tok/s -> {row['speedup']:.2f}x")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda or cpu")
    p.add_argument("--tiny", action="store_true", help="tiny shapes (a correctness run, not a timing)")
    p.add_argument("--ctx", type=int, default=512, help="KV-cache positions of the decode stack")
    p.add_argument("--reps", type=int, default=100, help="replays per timing (median)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved dense/sparse rounds (median of medians)")
    p.add_argument("--skip-decode", action="store_true", help="only the per-layer timings")
    p.add_argument("--out", default="", help="write the numbers as JSON here")
    a = p.parse_args(argv)
    dtype = torch.float16 if a.device == "cuda" else torch.float32
    shape = TINY if a.tiny else LLAMA7B
    torch.manual_seed(0)
    with torch.no_grad():
        result = {"machine": torch.cuda.get_device_name() if a.device == "cuda" else platform.processor() or "cpu",
                  "torch": torch.__version__, "shape": shape, "dtype": str(dtype), "ctx": a.ctx,
                  "layer": layer_speed(a.device, dtype, shape, a.reps, a.rounds)}
        if a.out:  # the layer numbers survive a decode run that does not finish
            Path(a.out).write_text(json.dumps(result, indent=1))
        if not a.skip_decode:
            result["decode"] = decode_speed(a.device, dtype, shape, a.ctx, a.reps, a.rounds)
    try:
        import triton

        result["triton"] = triton.__version__
    except ImportError:
        result["triton"] = None
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1))
        log(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
