"""Timing helpers shared by the GPU benchmarks: CUDA-event medians (cold L2) and CUDA-graph replays (warm L2)."""

from __future__ import annotations

import torch

DEV = "cuda"


def log(*a) -> None:
    print(*a, flush=True)


def bench(fn, warmup: int = 25, rep: int = 100) -> float:
    """Median milliseconds of fn (cold L2: do_bench zeroes a 256 MB buffer before each repetition)."""
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))


def bench_graph(fn, rep: int = 100) -> float:
    """Median milliseconds of one call when replayed from a CUDA graph (L2 warm, no launch gaps)."""
    import triton.testing

    return float(triton.testing.do_bench_cudagraph(fn, rep=rep, return_mode="median"))


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref.double()).norm() / ref.double().norm())
