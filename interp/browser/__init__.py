"""The latent browser: an offline static site of an SAE's latents built streaming from a sparse cache.

    from interp.browser import build_browser
    build_browser("data/saes/toy-pythia-4l/L2_resid_topk_x4", "sparse_cache/", "site/")   # open site/index.html
    interp.browse(sae, cache, "site/")                                                    # Jupyter: shows it

Modules: collect (three streaming passes: statistics and top-k, histogram, quantile samples), contexts (token
windows, visible token strings), weights (decoder neighbours, logit effects), site + assets (the files), build
(resolving hook, model, tokenizer and the dense hook for the SAE-error correlation), synthetic (planted caches).
"""

from interp.browser.build import Site, browse, build_browser
from interp.browser.collect import LatentData, collect

__all__ = ["LatentData", "Site", "browse", "build_browser", "collect"]
