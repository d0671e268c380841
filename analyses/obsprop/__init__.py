"""Observable Propagation (Dunefsky & Cohan 2024, arXiv 2312.16291) on transformer-lens models.

    from analyses.obsprop import Config, run
    result = run()                          # embedded default: pronoun, occupation-bias and code observables
    result.figures()["coupling_vs_slope"]

The maths (observables, LN/OV/MLP pullbacks, paths, coupling) is in method.py / observables.py and works on any
HookedTransformer; patching.py does path patching and the greedy path search; tasks.py runs the embedded tasks.
"""

from __future__ import annotations

from typing import Any, ClassVar

from interp.provenance import environment
from interp.results import Result

from .config import Config
from .method import Node, cosine, cosine_matrix, coupling, feature_vector, pullback_head_ov, pullback_mlp
from .observables import observable, pullback_layernorm, pullback_unembed

__all__ = ["Config", "run", "ObsPropResult", "observable", "pullback_unembed", "pullback_layernorm",
           "pullback_head_ov", "pullback_mlp", "feature_vector", "coupling", "cosine", "cosine_matrix", "Node"]


class ObsPropResult(Result):
    """Observable-propagation result: feature-vector norms/cosines per head, paths, coupling vs slope, baselines."""

    analysis: ClassVar[str] = "obsprop"
    title: ClassVar[str] = "Observable propagation (Dunefsky & Cohan 2024)"

    def figures(self) -> dict[str, Any]:
        from .figures import build_figures

        return build_figures(self.summary, self.details, self.arrays)


def run(config: Config | None = None, model=None) -> ObsPropResult:
    """Run every obsprop task on the configured model (or on `model`, a HookedTransformer with a tokenizer)."""
    import torch

    from .tasks import load_model, run_tasks

    cfg = (config or Config()).validate()
    torch.manual_seed(cfg.seed)
    m = load_model(cfg, model)
    summary, details, arrays, prov = run_tasks(cfg, m)
    from interp import models

    # the step that ran (cfg.step -1 means the final one); a user's model names its own step or none
    step = (models.resolved_step(cfg.model or models.DEFAULT_MODEL, cfg.step, m) if model is None
            else models.resolved_step(None, None, m))
    prov = {**prov, "model": cfg.model or (models.DEFAULT_MODEL if model is None else summary["model"]),
            "step": step, "environment": environment()}
    return ObsPropResult(summary=summary, details=details, arrays=arrays, config=cfg.to_dict(), provenance=prov)
