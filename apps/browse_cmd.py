"""`interp browse`: the latent browser of an SAE's latents in a sparse cache, as an offline static site."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    """Register the `browse` subcommand."""
    p = sub.add_parser("browse", help="build the offline latent browser of an SAE over a sparse cache")
    p.add_argument("--sae", required=True, help="the SAE folder (sae-lens cfg.json + sae_weights.safetensors), or a "
                   "transcoder's (its latents at its input hook)")
    p.add_argument("--cache", required=True, help="a cache holding its latents (interp extract --sae ... --sparse)")
    p.add_argument("--out", required=True, help="site folder (open OUT/index.html; no server needed)")
    p.add_argument("--hook", default=None, help="the latents' hook (default: the cache's sparse hook of this SAE)")
    p.add_argument("--dense-cache", default=None, help="a cache holding the SAE's hook densely over the same "
                   "tokens, for the correlation with the SAE-error norm (default: the cache itself if it has it); "
                   "for a transcoder its output hook (and its input hook if it has a skip term)")
    p.add_argument("--model", default=None, help="the model for logit effects and token strings, when the cache's "
                   "manifest names one that cannot be loaded here (an embedded name, a local folder, module:factory)")
    p.add_argument("--tokenizer", default=None, help="a folder with the tokenizer for the token strings (default: "
                   "the model's)")
    p.add_argument("--no-model", action="store_true", help="skip logit effects (no model is loaded)")
    p.add_argument("--k-top", type=int, default=20, help="top activating contexts per latent")
    p.add_argument("--bins", type=int, default=64, help="activation-histogram bins per latent")
    p.add_argument("--quantiles", type=int, default=8, help="activation-quantile bins sampled per latent")
    p.add_argument("--per-quantile", type=int, default=4, help="sampled contexts per quantile bin")
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--seed", type=int, default=0, help="seed of the quantile samples")


def cmd_browse(a: argparse.Namespace) -> int:
    from interp.browser import build_browser
    from interp.errors import ConfigError
    from interp.models import load, load_tokenizer

    if a.no_model and a.model:
        raise ConfigError("--model and --no-model contradict each other", hint="pass one of them")
    tokenizer = load_tokenizer(a.tokenizer) if a.tokenizer else None  # before the slow work: a bad path fails now
    model = False if a.no_model else load(a.model) if a.model else None
    site = build_browser(a.sae, a.cache, a.out, hook=a.hook, dense_cache=a.dense_cache, model=model,
                         tokenizer=tokenizer, k_top=a.k_top, n_bins=a.bins,
                         n_quantiles=a.quantiles, per_quantile=a.per_quantile, device=a.device, seed=a.seed)
    print(f"wrote {site / 'index.html'}")
    return 0


def build_demo_browser(out: Path, sae: str = "L2_resid_topk_x4", *, quick: bool = False, dense: bool = True,
                       device: str = "auto") -> Path:
    """The demo's browser of one shipped SAE: extract its latents (top-k) over the embedded corpus into
    `out/latent-cache` (and, with `dense`, its hook densely into `out/latent-cache-dense` for the SAE-error
    correlation), then build the site into `out/report/latents`, which the report index built afterwards links.
    quick: 4,096 tokens instead of 65,536."""
    from interp.browser import build_browser
    from interp.encode import DEFAULT_HOOKS, sparse_hook_formats
    from interp.extract import ExtractConfig, extract
    from interp.models import DEFAULT_MODEL, load

    folder = Path(__file__).resolve().parents[1] / "data" / "saes" / DEFAULT_MODEL / sae
    model = load(DEFAULT_MODEL)
    tokens = 4096 if quick else 65_536
    hooks, formats = sparse_hook_formats(model, DEFAULT_HOOKS, "topk", sae=str(folder))
    common = {"model": DEFAULT_MODEL, "data": "embedded", "tokens": tokens, "ctx": 128, "batch_size": 16,
              "overwrite": True}
    extract(ExtractConfig(out=str(out / "latent-cache"), hooks=hooks, formats=formats, **common), model=model,
            progress=not quick)
    dense_cache = None
    if dense:
        dense_cache = out / "latent-cache-dense"
        extract(ExtractConfig(out=str(dense_cache), hooks=hooks, **common), model=model, progress=not quick)
    return build_browser(folder, out / "latent-cache", out / "report" / "latents", model=model,
                         dense_cache=dense_cache, device=device)
