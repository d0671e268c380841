"""SAE evals: the standard numbers of a model's SAEs, streaming over a token source or a cache.

    from analyses.sae_evals import Config, run
    result = run(Config())                     # the shipped SAEs of the embedded default model
    result.details["saes"]                     # one row per SAE: FVU, L0, dead/dense, CE/KL loss recovered

Reconstruction numbers come from one forward pass per batch that serves every SAE of the model; loss recovered
splices each SAE in with `interp.intervene` and ablates each hook (zero and mean) once. Transcoders are scored on
the output hook they replace (both hooks captured in the same forward). `interp saes eval` runs it.
"""

from interp.analysis import Analysis

from .config import Config
from .result import SAEEvalsResult
from .studies import run

ANALYSIS = Analysis(
    name="sae-evals", title=SAEEvalsResult.title, config=Config, run=run, result=SAEEvalsResult,
    quick={"n_tokens": 1024, "ctx": 64, "names": ["L2_resid_topk_x4", "L2_resid_topk_x16", "L2_attn_z_topk_x4"]},
)

__all__ = ["ANALYSIS", "Config", "run", "SAEEvalsResult"]
