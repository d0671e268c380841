"""Observable Propagation (Dunefsky & Cohan 2024, arXiv 2312.16291) on transformer-lens models.

    from analyses.obsprop import Config, run
    result = run()                          # embedded default: pronoun, occupation-bias and code observables
    result.figures()["coupling_vs_slope"]

The maths (observables, LN/OV/MLP pullbacks, paths, coupling) is in method.py / observables.py and works on any
HookedTransformer; patching.py does path patching and the greedy path search; tasks.py runs the embedded tasks.
"""

from interp.analysis import Analysis

from .config import Config
from .method import Node, cosine, cosine_matrix, coupling, feature_vector, pullback_head_ov, pullback_mlp
from .observables import observable, pullback_layernorm, pullback_unembed
from .result import ObsPropResult
from .studies import run

ANALYSIS = Analysis(
    name="obsprop", title=ObsPropResult.title, config=Config, run=run, result=ObsPropResult,
    quick={"n_pairs": 16, "n_repeats": 5, "n_gauss": 20_000, "n_scatter": 1000},
)

__all__ = ["ANALYSIS", "Config", "run", "ObsPropResult", "observable", "pullback_unembed", "pullback_layernorm",
           "pullback_head_ov", "pullback_mlp", "feature_vector", "coupling", "cosine", "cosine_matrix", "Node"]
