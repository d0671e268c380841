"""`interp browse`: the latent browser of an SAE's latents in a sparse cache, as an offline static site."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    """Register the `browse` subcommand."""
    p = sub.add_parser("browse", help="build the offline latent browser of an SAE over a sparse cache")
    p.add_argument("--sae", required=True, help="the SAE folder (sae-lens cfg.json + sae_weights.safetensors)")
    p.add_argument("--cache", required=True, help="a cache holding its latents (interp extract --sae ... --sparse)")
    p.add_argument("--out", required=True, help="site folder (open OUT/index.html; no server needed)")
    p.add_argument("--hook", default=None, help="the latents' hook (default: the cache's sparse hook of this SAE)")
    p.add_argument("--dense-cache", default=None, help="a cache holding the SAE's hook densely over the same "
                   "tokens, for the correlation with the SAE-error norm (default: the cache itself if it has it)")
    p.add_argument("--no-model", action="store_true", help="skip logit effects (no model is loaded)")
    p.add_argument("--k-top", type=int, default=20, help="top activating contexts per latent")
    p.add_argument("--bins", type=int, default=64, help="activation-histogram bins per latent")
    p.add_argument("--quantiles", type=int, default=8, help="activation-quantile bins sampled per latent")
    p.add_argument("--per-quantile", type=int, default=4, help="sampled contexts per quantile bin")
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--seed", type=int, default=0, help="seed of the quantile samples")


def cmd_browse(a: argparse.Namespace) -> int:
    from interp.browser import build_browser

    site = build_browser(a.sae, a.cache, a.out, hook=a.hook, dense_cache=a.dense_cache,
                         model=False if a.no_model else None, k_top=a.k_top, n_bins=a.bins,
                         n_quantiles=a.quantiles, per_quantile=a.per_quantile, device=a.device, seed=a.seed)
    print(f"wrote {site / 'index.html'}")
    return 0
