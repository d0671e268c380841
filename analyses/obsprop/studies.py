"""`run(Config)`: the paper's studies on one model (tasks.py holds them), then its claims against the numbers.

The studies, in the order `run_tasks` runs them: observables from the labelled prompts (§3), greedy path
patching, feature vectors of every head through the OV circuit and LayerNorm (§3.2, §4), couplings against the
regression slopes on held-out text (§4.1), the zero-data gender direction against 30 + 30 probes (§5), debiasing,
and the exact self-checks (OV identity, first-order paths, isotropic coupling, linear MLP).
"""

from __future__ import annotations

import time

import torch

from interp.analysis import Finding, Provenance
from interp.results import fmt

from .config import Config
from .result import ObsPropResult
from .steps import circuit_studies, head_features, heldout_study, path_search, reference_points, self_checks, task_setup
from .tasks import OBS_NAMES, conversion_note, load_model


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
                        "random observables; √(1 − 2/d) is expected, √(1 − 1/d) for RMSNorm)",
                        summary.get("ln_cos_approx_exact_mean"), ">=", 0.98, key="ln_cos_approx_exact_mean",
                        paper="cosine 0.9978 and 0.9994 at d = 2048",
                        detail=f"The smallest cosine is {num('ln_cos_approx_exact_min')}."),
    ]


def run(config: Config | None = None, model=None) -> ObsPropResult:
    """Run every obsprop study on the configured model (or on `model`, a HookedTransformer with a tokenizer)."""
    from interp import models, progress

    cfg = (config or Config()).validate()
    torch.manual_seed(cfg.seed)
    progress.stage("obsprop", f"loading {cfg.model or models.DEFAULT_MODEL} in float64")
    m = load_model(cfg, model)
    summary, details, arrays, extra = run_tasks(cfg, m)
    # the step that ran (cfg.step -1 means the final one); a user's model names its own step or none
    step = (models.resolved_step(cfg.model or models.DEFAULT_MODEL, cfg.step, m) if model is None
            else models.resolved_step(None, None, m))
    n_tokens = extra.pop("n_heldout_tokens")
    if conversion_note(m) is not None:  # a natively run HF model, converted for the weight-based pullbacks
        extra["weights"] = conversion_note(m)
    prov = Provenance.collect(model=cfg.model or (models.DEFAULT_MODEL if model is None else summary["model"]),
                              step=step, data=cfg.cache or cfg.data, n_tokens=n_tokens, cache=cfg.cache, **extra)
    return ObsPropResult(summary=summary, details=details, arrays=arrays, config=cfg.to_dict(),
                         provenance=prov.to_dict(), findings=findings(summary))


def run_tasks(cfg: Config, model) -> tuple[dict, dict, dict, dict]:
    """Every study (analyses.obsprop.steps), as (summary, details, arrays, provenance)."""
    t0 = time.perf_counter()
    t = task_setup(cfg, model)
    paths = path_search(cfg, model, t)
    refs = reference_points(cfg, model, t)
    hf = head_features(cfg, model, t, paths, refs)
    circuits = circuit_studies(cfg, model, t, paths, refs, hf)
    held = heldout_study(cfg, model, t, paths, refs, hf)
    sc = self_checks(cfg, model, t, paths, refs, hf)
    search, singles, patch = paths.search, paths.singles, paths.patch
    norms, norms_noln, cos_heads, raw_cos, tops, top, cos_top = (hf.norms, hf.norms_noln, hf.cos_heads, hf.raw_cos,
                                                                 hf.tops, hf.top, hf.cos_top)
    carry, cpl, scatter = hf.details["carrying_heads"], held.coupling, held.scatter
    details: dict = {**t.details, "paths": {k: [{"path": p, "effect": s} for p, s in v] for k, v in search.items()},
                     "single_node_effect": singles, **hf.details, **circuits, **held.details, "selfcheck": sc}
    fo_errs = [r["max_rel_err"] for r in sc["first_order"] if "max_rel_err" in r]
    L, H = model.cfg.n_layers, model.cfg.n_heads

    g = details["gender"]
    c_err = [abs(r["coupling"] - r["slope"]) for r in cpl if r["pair"] == "subj->obj"]
    c_err_all = [abs(r["coupling"] - r["slope"]) for r in cpl]
    summary = {
        "model": getattr(model.cfg, "model_name", "model"),
        "subj_logit_gap": details["logit_gap"]["subj"]["gap"],
        "obj_logit_gap": details["logit_gap"]["obj"]["gap"],
        "occupation_bias_gap": details["logit_gap"]["occu"]["gap"],
        "top_subj_head": str(top),
        "top_subj_path": "->".join(search["subj"][0][0]),
        "cos_raw_subj_obj": float(raw_cos[0, 1]),
        "cos_heads_subj_obj_mean": float(sum(r["cos_subj_obj"] for r in carry) / len(carry)),
        "pronoun_features_more_similar": all(r["cos_subj_obj"] > float(raw_cos[0, 1]) for r in carry),
        "gender_cos_obsprop": g["obsprop"]["cos_truth"],
        "gender_cos_probe30": g["probe"]["cos_truth"],
        "gender_cos_meandiff30": g["meandiff"]["cos_truth"],
        "gender_auc_obsprop": g["obsprop"]["auc"],
        "gender_auc_probe30": g["probe"]["auc"],
        "gender_cos_probe30_same_names": g["probe_tokens"]["cos_truth"],
        "obsprop_beats_probe": g["obsprop"]["cos_truth"] > g["probe"]["cos_truth"],
        "n_carrying_heads": len(tops),
        "coupling_top": cpl[0]["coupling"],
        "slope_top": cpl[0]["slope"],
        "coupling_slope_max_abs_err": max(c_err),
        "coupling_predicts_slope": max(c_err) < 0.1,
        "coupling_slope_max_abs_err_all_pairs": max(c_err_all),
        "first_order_max_rel_err": max(fo_errs) if fo_errs else float("nan"),
        "ov_identity_max_rel_err": sc["ov_dla"]["ov_identity_max_rel_err"],
        "dla_rel_err": sc["ov_dla"]["dla_rel_err"],
        "isotropic_coupling_abs_err": abs(sc["isotropic_coupling"]["coupling"] - sc["isotropic_coupling"]["slope"]),
        "linear_mlp_max_rel_err": max((v for k, v in sc["linear_mlp"].items() if k.endswith("rel_err")),
                                      default=float("nan")),
        "linear_mlp_boundary_residual": sc["linear_mlp"].get("boundary_residual", float("nan")),
        "ln_cos_approx_exact_mean": details["ln"]["random_y"]["cos_mean"],
        "ln_cos_approx_exact_min": details["ln"]["random_y"]["cos_min"],
        "ln_approx_perp_rel_err_max": details["ln"]["random_y"]["perp_rel_err_max"],
        "ln_final_cos_approx_exact": details["ln"]["ln_final"]["cos_approx_exact"],
        "ln_final_cos_approx_boundary": details["ln"]["ln_final"]["cos_approx_boundary"],
        "debias_bias_gap_before": details["debias"]["bias_gap_before"],
        "debias_bias_gap_after": details["debias"]["bias_gap_after"],
        "debias_name_gap_before": details["debias"]["name_gap_before"],
        "debias_name_gap_after": details["debias"]["name_gap_after"],
        "debias_occtok_bias_gap_after": details["debias"].get("bias_gap_after_occupation_tokens", float("nan")),
        "debias_occtok_name_gap_after": details["debias"].get("name_gap_after_occupation_tokens", float("nan")),
        "cos_code_observables_top": details["code_heads_by_norm"][0]["cos_code_code_block"],
    }
    arrays = {"head_norms": norms.numpy(), "head_norms_noln": norms_noln.numpy(), "patch_effect": patch.numpy(),
              "cos_subj_obj_heads": cos_heads.numpy(), "cos_raw": raw_cos.numpy(), "cos_top_head": cos_top.numpy(),
              "coupling_pred": torch.tensor([r["coupling"] for r in cpl]).numpy(),
              "coupling_cov": torch.tensor([r["coupling_cov"] for r in cpl]).numpy(),
              "slope_fit": torch.tensor([r["slope"] for r in cpl]).numpy(), **scatter}
    details["obs_names"] = list(OBS_NAMES)
    details["coupling_labels"] = [r["label"] for r in cpl]
    if getattr(model, "converted_from", None):
        summary["converted_from"] = model.converted_from
    summary["runtime_s"] = time.perf_counter() - t0
    prov = {"n_heldout_tokens": held.n_tokens, "n_layers": L, "n_heads": H, "d_model": model.cfg.d_model}
    return summary, details, arrays, prov
