"""The embedded-model tasks: pronoun, occupation-bias and code observables; paths; couplings; baselines; debias."""

from __future__ import annotations

import time

import torch

from interp.config_checks import check_context
from interp.errors import ConfigError

from .config import Config
from .method import Node, cosine, feature_vector, mean_scale_ref
from .patching import at_pos
from .scores import (
    linear_probe,
    mean_difference,
    separation,
)

OBS_NAMES = ("subj", "obj", "occu", "code", "code_block")


def load_model(cfg: Config, model=None):
    """The model in float64 (linear algebra and boundary searches in double precision)."""
    from interp import models

    if model is None:
        name = cfg.model or models.DEFAULT_MODEL
        model = models.load(name, step=None if cfg.step < 0 else cfg.step, device=cfg.device, dtype="float64")
    if not hasattr(model, "cfg") or not hasattr(model, "run_with_cache"):
        raise ConfigError(f"obsprop needs a transformer-lens HookedTransformer: its pullbacks read the attention "
                          f"weights, OV circuits and LayerNorm scales of TL blocks, and {type(model).__name__} "
                          "exposes none of them",
                          hint="use a model transformer-lens converts (GPT-2, GPT-NeoX/Pythia, GPT-Neo, Llama, or an "
                               "embedded suite)")
    if getattr(model, "tokenizer", None) is None:
        raise ConfigError("the model has no tokenizer", hint="obsprop builds observables from token strings")
    if model.cfg.dtype != torch.float64:
        model = model.to(torch.float64, print_details=False)  # transformer-lens prints "Changing model dtype" else
        model.cfg.dtype = torch.float64
    return model.eval()


def mean_refs(model, sets: list[tuple[dict, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Residual streams at each prompt's last token over the prompts of (cache, last-index) sets: their mean,
    at the prompts' mean LN scale (mean_scale_ref; the scale of the mean vector is smaller)."""
    rows: dict[str, list[torch.Tensor]] = {}
    for c, last in sets:
        for k, v in c.items():
            if "hook_resid" in k:
                rows.setdefault(k, []).append(at_pos(v, last))
    return {k: mean_scale_ref(torch.cat(v), model.cfg.eps) for k, v in rows.items()}


def head_source_ref(model, sets: list[tuple[dict, torch.Tensor]], layer: int, head: int) -> torch.Tensor:
    """The LN input a head reads most from the last token: mean over prompts of the residual at the argmax source
    token, at those residuals' mean LN scale (mean_scale_ref)."""
    xs = []
    for c, last in sets:
        A = at_pos(c[f"blocks.{layer}.attn.hook_pattern"][:, head], last)          # [b, k]
        j = A.argmax(-1)
        xs.append(c[f"blocks.{layer}.hook_resid_pre"][torch.arange(len(j)), j])
    return mean_scale_ref(torch.cat(xs), model.cfg.eps)


def obs_values(model, n: torch.Tensor, tp: torch.Tensor, tn: torch.Tensor, last: torch.Tensor
               ) -> tuple[float, float]:
    """Mean observable value at the last token on the positive and the negative prompts."""
    with torch.inference_mode():
        vp = at_pos(model(tp), last) @ n
        vn = at_pos(model(tn), last) @ n
    return float(vp.mean()), float(vn.mean())


def head_vectors(model, n, refs, ref_caches, ln: str, approx_norm: str, ln_final: str = "token",
                 refs_neg: dict | None = None) -> torch.Tensor:
    """Direct-path feature vector of every head. [L, H, d_model]"""
    L, H = model.cfg.n_layers, model.cfg.n_heads
    out = torch.zeros(L, H, model.cfg.d_model, dtype=torch.float64)
    for layer in range(L):
        for h in range(H):
            node = f"attn{layer}.{h}"
            nr = {node: head_source_ref(model, ref_caches, layer, h)}
            out[layer, h], _ = feature_vector(model, n, [node], refs, ln=ln, node_refs=nr, approx_norm=approx_norm,
                                              ln_final=ln_final, refs_neg=refs_neg)
    return out


def top_heads(single: dict[str, float], k: int, min_frac: float = 0.0) -> list[Node]:
    """Up to k heads with the largest positive path-patching effect, keeping those with at least min_frac of the
    best head's effect (the heads that "carry" the feature). Always at least one."""
    heads = sorted(((s, name) for name, s in single.items() if name.startswith("attn")), reverse=True)
    best = heads[0][0]
    out = []
    for s, name in heads[:k]:
        if out and s < min_frac * best:
            break
        lay, h = name[4:].split(".")
        out.append(Node("attn", int(lay), int(h)))
    return out


def heldout_activations(model, tokenizer, cfg: Config, layers: list[int]
                        ) -> tuple[torch.Tensor, torch.Tensor, dict[int, torch.Tensor]]:
    """Held-out token ids [N], their positions [N] and resid_pre activations {layer: [N, d]} (float32), read from
    the activation cache `cfg.cache` when given (hooks blocks.L.hook_resid_pre), else computed on the embedded
    held-out corpus (cfg.score_tokens tokens in blocks of cfg.ctx)."""
    hooks = [f"blocks.{lay}.hook_resid_pre" for lay in layers]
    if cfg.cache:
        from interp.cache import open_cache

        reader = open_cache(cfg.cache)
        stop = min(reader.n_rows, cfg.score_tokens)
        meta = reader.tokens[:stop]
        return meta[:, 0], meta[:, 2], {lay: reader.read(h, 0, stop).float() for lay, h in zip(layers, hooks)}
    from interp.sources import token_blocks

    check_context(model, cfg.ctx)
    ctx = cfg.ctx
    toks = token_blocks(cfg.data, tokenizer, ctx=ctx, n_tokens=cfg.score_tokens)
    acts: dict[int, list] = {lay: [] for lay in layers}
    for s in range(0, len(toks), 16):
        with torch.inference_mode():
            _, c = model.run_with_cache(toks[s:s + 16], names_filter=hooks, stop_at_layer=max(layers) + 1)
        for lay in layers:
            acts[lay].append(c[f"blocks.{lay}.hook_resid_pre"].float().reshape(-1, model.cfg.d_model))
    pos = torch.arange(toks.shape[1]).repeat(toks.shape[0])
    return toks.reshape(-1), pos, {lay: torch.cat(v) for lay, v in acts.items()}


def _balanced_diff(x: torch.Tensor, tok: torch.Tensor, names_f: list[int], names_m: list[int]) -> torch.Tensor:
    """Name-balanced class-mean difference: mean over female names of each name's mean activation, minus the same
    for male names (every name weighs the same, whatever its frequency)."""
    mf = torch.stack([x[tok == t].mean(0) for t in names_f])
    mm = torch.stack([x[tok == t].mean(0) for t in names_m])
    return mf.mean(0) - mm.mean(0)


def gender_baselines(y: torch.Tensor, x: torch.Tensor, tok: torch.Tensor, ids_f: list[int], ids_m: list[int],
                     cfg: Config) -> dict:
    """Zero-shot ObsProp direction vs 30+30 linear probe / mean difference.

    name_split (headline): per repeat, names are split in halves; the baselines train on 30+30 tokens of the first
    half; everything is scored on the second half (unseen names): cos with the planted gender direction (the
    name-balanced class-mean difference over the unseen names) and held-out separation (AUC, r²).
    token_split (reference): random 30+30 tokens for training, the rest (same names) for evaluation."""
    f_present = [t for t in ids_f if int((tok == t).sum()) > 0]
    m_present = [t for t in ids_m if int((tok == t).sum()) > 0]
    is_f, is_m = torch.isin(tok, torch.tensor(f_present)), torch.isin(tok, torch.tensor(m_present))
    out: dict = {"n_female": int(is_f.sum()), "n_male": int(is_m.sum()), "n_names": len(f_present) + len(m_present)}
    truth_all = _balanced_diff(x, tok, f_present, m_present)
    out["obsprop_all"] = {"cos_truth": cosine(y, truth_all), **separation(y, x[is_f], x[is_m])}
    rows: dict[str, list] = {"obsprop": [], "probe": [], "meandiff": [], "probe_tokens": [], "meandiff_tokens": []}
    for r in range(cfg.n_repeats):
        g = torch.Generator().manual_seed(cfg.seed * 1000 + r)
        pf = [f_present[i] for i in torch.randperm(len(f_present), generator=g)]
        pm = [m_present[i] for i in torch.randperm(len(m_present), generator=g)]
        tr_f, te_f = pf[: len(pf) // 2], pf[len(pf) // 2:]
        tr_m, te_m = pm[: len(pm) // 2], pm[len(pm) // 2:]
        xf_tr, xm_tr = x[torch.isin(tok, torch.tensor(tr_f))], x[torch.isin(tok, torch.tensor(tr_m))]
        xf_te, xm_te = x[torch.isin(tok, torch.tensor(te_f))], x[torch.isin(tok, torch.tensor(te_m))]
        if min(len(xf_tr), len(xm_tr)) < cfg.n_train:
            continue
        sf = torch.randperm(len(xf_tr), generator=g)[:cfg.n_train]
        sm = torch.randperm(len(xm_tr), generator=g)[:cfg.n_train]
        truth = _balanced_diff(x, tok, te_f, te_m)
        dirs = {"obsprop": y, "probe": linear_probe(xf_tr[sf], xm_tr[sm]), "meandiff": mean_difference(xf_tr[sf],
                                                                                                      xm_tr[sm])}
        for name, u in dirs.items():
            rows[name].append({"cos_truth": cosine(u, truth), "cos_obsprop": cosine(u, y),
                               **separation(u, xf_te, xm_te)})
        # token split: same names in training and evaluation
        xf, xm = x[is_f], x[is_m]
        qf, qm = torch.randperm(len(xf), generator=g), torch.randperm(len(xm), generator=g)
        trf, trm, tef, tem = xf[qf[:cfg.n_train]], xm[qm[:cfg.n_train]], xf[qf[cfg.n_train:]], xm[qm[cfg.n_train:]]
        truth_ho = mean_difference(tef, tem)
        for name, u in (("probe_tokens", linear_probe(trf, trm)), ("meandiff_tokens", mean_difference(trf, trm))):
            rows[name].append({"cos_truth": cosine(u, truth_ho), "cos_obsprop": cosine(u, y),
                               **separation(u, tef, tem)})
    if not rows["probe"]:
        raise ConfigError(f"too few name tokens for {cfg.n_train}+{cfg.n_train} training examples on half the names",
                          hint="raise score_tokens")
    for name, rs in rows.items():
        out[name] = {k: float(sum(r_[k] for r_ in rs) / len(rs)) for k in rs[0]}
        out[name]["n_repeats"] = len(rs)
    return out


def run_tasks(cfg: Config, model) -> tuple[dict, dict, dict, dict]:
    """Every study (analyses.obsprop.steps), as (summary, details, arrays, provenance)."""
    from .steps import (
        circuit_studies,
        head_features,
        heldout_study,
        path_search,
        reference_points,
        self_checks,
        task_setup,
    )

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
    summary["runtime_s"] = time.perf_counter() - t0
    prov = {"n_heldout_tokens": held.n_tokens, "n_layers": L, "n_heads": H, "d_model": model.cfg.d_model}
    return summary, details, arrays, prov
