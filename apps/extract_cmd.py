"""`interp extract`: stream activations of chosen hooks into an on-disk cache, densely or sparsely.

`--sae PATH --sparse topk|threshold` stores an SAE's latents (or top-k / thresholded activations) sparsely: the
same pipeline, with per-hook formats from `interp.encode.sparse_hook_formats`.
"""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    """Register the `extract` subcommand."""
    p = sub.add_parser("extract", help="stream activations of chosen hooks into an on-disk cache")
    p.add_argument("--model", default=None, help="embedded suite name, local HF folder, module.path:factory or "
                   "transformer-lens name (default: the embedded default)")
    p.add_argument("--checkpoint", type=int, default=None, help="training step of a suite (default: final)")
    p.add_argument("--hooks", nargs="+", default=["blocks.*.hook_resid_post"], help="hook-name globs")
    p.add_argument("--data", default="embedded", help="'embedded', a .txt/.jsonl/.parquet file, a folder, hf:NAME")
    p.add_argument("--text-column", default="text")
    p.add_argument("--tokens", type=int, default=65_536,
                   help="number of input tokens (default 65,536; a token file is read up to this many)")
    p.add_argument("--ctx", type=int, default=128, help="tokens per sequence")
    p.add_argument("--batch-size", type=int, default=32, help="sequences per forward pass")
    p.add_argument("--dtype", default="float32", help="storage dtype: float32, bfloat16, float16")
    p.add_argument("--positions", default="all", help="all, last, drop:K, range:A:B")
    p.add_argument("--prepend-bos", action="store_true", help="start every sequence with the end-of-text token")
    p.add_argument("--shard-mb", type=float, default=64.0, help="target size of one shard across hooks (MiB)")
    p.add_argument("--writer-threads", type=int, default=0,
                   help="threads hashing and writing shard files (0: automatic; on the CPU one per four cores, at most "
                        "four; with a CUDA device all cores but four, at most twelve)")
    p.add_argument("--out", required=True, help="cache folder")
    p.add_argument("--resume", action="store_true", help="continue an interrupted extraction")
    p.add_argument("--overwrite", action="store_true", help="replace an existing cache in --out")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    p.add_argument("--model-dtype", default="float32", help="weights' dtype at load time: float32, bfloat16, float16")
    p.add_argument("--device-map", default=None, help="'auto': spread a natively run HF folder over the GPUs, "
                   "the CPU and disk with accelerate")
    p.add_argument("--sae", default=None, help="sae-lens SAE folder: store its latents instead of the hook (a "
                   "transcoder's: encoded from its input hook)")
    p.add_argument("--sparse", choices=["topk", "threshold"], default=None, help="store activations sparsely")
    p.add_argument("--k", type=int, default=None, help="top-k for --sparse topk")
    p.add_argument("--threshold", type=float, default=0.0, help="threshold for --sparse threshold")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--timings", action="store_true", help="also print this rank's seconds by phase")


def extract_options(a: argparse.Namespace) -> dict:
    """The ExtractConfig fields that `interp extract` takes straight from its flags (dense and sparse alike)."""
    names = ("out", "checkpoint", "data", "text_column", "tokens", "ctx", "batch_size", "dtype", "positions",
             "prepend_bos", "shard_mb", "device", "resume", "overwrite", "writer_threads", "model_dtype", "device_map")
    return {n: getattr(a, n) for n in names}


def cmd_extract(a: argparse.Namespace) -> int:
    """Run `interp extract` (the sparse path when --sae or --sparse is given); print the summary line."""
    from interp.extract import ExtractConfig, extract
    from interp.models import DEFAULT_MODEL

    if a.sae or a.sparse:
        return sparse_extract(a)
    cfg = ExtractConfig(model=a.model or DEFAULT_MODEL, hooks=a.hooks, **extract_options(a))
    from interp import distributed

    distributed.init_from_env(a.device)
    summary = extract(cfg, progress=not a.quiet)
    rank = distributed.rank_world()[0]
    if rank == 0:
        print(summary.line())
    if a.timings:
        phases = ", ".join(f"{k} {v:.2f}" for k, v in summary.timings.items())
        print(f"rank {rank} seconds by phase: {phases}")
    return 0


def sparse_extract(a: argparse.Namespace) -> int:
    """Store SAE latents (or thresholded / top-k activations) sparsely in the cache; print the summary line."""
    from interp import distributed
    from interp.encode import check_transcoder_hooks, sparse_hook_formats
    from interp.extract import ExtractConfig, extract, preflight
    from interp.models import DEFAULT_MODEL, load

    distributed.init_from_env(a.device)
    model_name = a.model or DEFAULT_MODEL
    preflight(ExtractConfig(model=model_name, **extract_options(a)))  # refusals before the model loads
    if a.sae:
        check_transcoder_hooks(list(a.hooks), a.sae)  # a transcoder's output hook named instead of its input
    model = load(model_name, a.checkpoint, device=distributed.local_device(a.device), dtype=a.model_dtype,
                 device_map=a.device_map)
    value_dtype = a.dtype if a.dtype in ("bfloat16", "float16", "bf16", "fp16") else "bfloat16"
    hooks, formats = sparse_hook_formats(model, list(a.hooks), a.sparse, k=a.k, threshold=a.threshold, sae=a.sae,
                                         value_dtype=value_dtype)
    cfg = ExtractConfig(model=model_name, hooks=hooks, formats=formats, **extract_options(a))
    summary = extract(cfg, model=model, progress=not a.quiet)
    if distributed.rank_world()[0] == 0:
        print(summary.line())
    return 0
