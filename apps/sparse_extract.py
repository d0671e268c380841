"""`interp extract --sae PATH --sparse topk|threshold`: the dense extraction pipeline with sparse hook formats."""

from __future__ import annotations

import argparse


def sparse_extract(a: argparse.Namespace) -> int:
    """Store SAE latents (or thresholded / top-k activations) sparsely in the cache; print the summary line."""
    from apps.cli import extract_options
    from interp import distributed
    from interp.cache.sparse_formats import sparse_hook_formats
    from interp.extract import ExtractConfig, extract, preflight
    from interp.models import DEFAULT_MODEL, load

    distributed.init_from_env(a.device)
    model_name = a.model or DEFAULT_MODEL
    preflight(ExtractConfig(model=model_name, **extract_options(a)))  # refusals before the model loads
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
