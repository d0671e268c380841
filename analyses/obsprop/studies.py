"""`run(Config)`: the paper's studies on one model (tasks.py holds them), then its claims against the numbers.

The studies, in the order `tasks.run_tasks` runs them: observables from the labelled prompts (§3), greedy path
patching, feature vectors of every head through the OV circuit and LayerNorm (§3.2, §4), couplings against the
regression slopes on held-out text (§4.1), the zero-data gender direction against 30 + 30 probes (§5), debiasing,
and the exact self-checks (OV identity, first-order paths, isotropic coupling, linear MLP).
"""

from __future__ import annotations

from interp.analysis import Finding, Provenance
from interp.results import fmt

from .config import Config
from .result import ObsPropResult


def findings(summary: dict) -> list[Finding]:
    """The paper's checkable claims (Dunefsky & Cohan 2024) against this run's numbers (a number a study did not
    produce makes its claim not applicable)."""
    def flag(key: str) -> float | None:
        return None if summary.get(key) is None else float(summary[key])

    def num(key: str) -> str:
        return fmt(summary.get(key), ".3g")

    return [
        Finding.compare("The carrying heads' subject- and object-pronoun feature vectors are more similar than the "
                        "two observables themselves", flag("pronoun_features_more_similar"), ">=", 1.0,
                        key="pronoun_features_more_similar",
                        paper="head cosines 0.91-0.99 vs 0.57 for the raw observables (GPT-Neo-1.3B)",
                        detail=f"Mean head cosine {num('cos_heads_subj_obj_mean')} vs {num('cos_raw_subj_obj')} for "
                               "the observables."),
        Finding.compare("The coupling coefficient predicts the regression slope of one feature's score on the "
                        "other's (largest absolute error, subject → object)", summary.get("coupling_slope_max_abs_err"),
                        "<", 0.1, key="coupling_slope_max_abs_err",
                        paper="predicted 0.712 / 0.801 / 0.748 vs fitted 0.769 / 0.800 / 0.763 (error ≤ 0.06)"),
        Finding.compare("With no labelled data, the observable's feature vector finds the gender direction better "
                        "than a probe trained on 30 + 30 examples", flag("obsprop_beats_probe"), ">=", 1.0,
                        key="obsprop_beats_probe", paper="cos 0.97 (ObsProp) vs 0.22 (probe) with the truth (§5)",
                        detail=f"Cosine with the held-out direction {num('gender_cos_obsprop')} vs "
                               f"{num('gender_cos_probe30')} for the probe."),
        Finding.compare("The approximate LayerNorm pullback keeps the exact pullback's direction (mean cosine over "
                        "random observables; √(1 − 2/d) is expected)", summary.get("ln_cos_approx_exact_mean"), ">=",
                        0.98, key="ln_cos_approx_exact_mean", paper="cosine 0.9978 and 0.9994 at d = 2048",
                        detail=f"The smallest cosine is {num('ln_cos_approx_exact_min')}."),
    ]


def run(config: Config | None = None, model=None) -> ObsPropResult:
    """Run every obsprop study on the configured model (or on `model`, a HookedTransformer with a tokenizer)."""
    import torch

    from interp import models, progress

    from .tasks import load_model, run_tasks

    cfg = (config or Config()).validate()
    torch.manual_seed(cfg.seed)
    progress.stage("obsprop", f"loading {cfg.model or models.DEFAULT_MODEL} in float64")
    m = load_model(cfg, model)
    summary, details, arrays, extra = run_tasks(cfg, m)
    # the step that ran (cfg.step -1 means the final one); a user's model names its own step or none
    step = (models.resolved_step(cfg.model or models.DEFAULT_MODEL, cfg.step, m) if model is None
            else models.resolved_step(None, None, m))
    n_tokens = extra.pop("n_heldout_tokens")
    prov = Provenance.collect(model=cfg.model or (models.DEFAULT_MODEL if model is None else summary["model"]),
                              step=step, data=cfg.cache or cfg.data, n_tokens=n_tokens, cache=cfg.cache, **extra)
    return ObsPropResult(summary=summary, details=details, arrays=arrays, config=cfg.to_dict(),
                         provenance=prov.to_dict(), findings=findings(summary))
