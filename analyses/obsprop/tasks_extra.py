"""Task pieces: LayerNorm treatments, MLP modes, path vectors, coupling vs slope, projection debiasing."""

from __future__ import annotations

import torch

from .config import Config
from .method import Node, cosine, coupling, feature_vector, final_hook, is_gated, is_rms_model
from .observables import APPROX_NORMS, ln_final_boundary, pullback_layernorm, pullback_unembed
from .prompts import class_prompts
from .scores import best_fit, observable_at_last, projection_hook


def ln_task(model, n, refs, refs_neg, sets: list[tuple[dict, torch.Tensor]], top: Node, cfg: Config) -> dict:
    """ln_final three ways (approx / exact at the token / tangent at the decision boundary) and, for random
    covectors on the model's real LN inputs, cos(approx, exact) and agreement on {1, x}^⟂ (exact only for the
    "scale" approx_norm), with approx at cfg.approx_norm; the {1, x}^⟂ error is also reported for every norm.
    RMSNorm: no centring, so approx and exact differ only along x (agreement on {x}^⟂; expected cos √(1 − 1/d))."""
    fh = final_hook(model)
    y = pullback_unembed(model, n)
    lnf = model.ln_final
    ya = pullback_layernorm(lnf, y, refs[fh], "approx", cfg.approx_norm)
    ye = pullback_layernorm(lnf, y, refs[fh], "exact")
    yb, binfo = ln_final_boundary(model, n, refs[fh], refs_neg[fh])
    out = {"ln_final": {"cos_approx_exact": cosine(ya, ye), "cos_approx_boundary": cosine(ya, yb),
                        "cos_exact_boundary": cosine(ye, yb), "boundary": binfo}}
    head_modes = {}
    for mode in ("none", "approx", "frozen", "exact"):
        head_modes[mode], _ = feature_vector(model, n, [str(top)], refs, ln=mode, approx_norm=cfg.approx_norm)
    out["top_head"] = {"head": str(top), "cos_approx_exact": cosine(head_modes["approx"], head_modes["exact"]),
                       "cos_approx_none": cosine(head_modes["approx"], head_modes["none"]),
                       "cos_frozen_exact": cosine(head_modes["frozen"], head_modes["exact"])}
    g = torch.Generator().manual_seed(cfg.seed)
    d = model.cfg.d_model
    rms = is_rms_model(model)
    cos: list[float] = []
    perp: dict[str, list[float]] = {k: [] for k in APPROX_NORMS}
    for layer in range(model.cfg.n_layers):
        ln = model.blocks[layer].ln1
        xs = torch.cat([c[f"blocks.{layer}.hook_resid_pre"][i, 1:int(last[i]) + 1]
                        for c, last in sets for i in range(len(last))])[:200]
        for x in xs:
            yy = torch.randn(d, generator=g, dtype=torch.float64)
            a = pullback_layernorm(ln, yy, x, "approx", cfg.approx_norm)
            cos.append(cosine(a, pullback_layernorm(ln, yy, x, "exact")))
            span = [x] if rms else [torch.ones(d, dtype=x.dtype), x]      # where approx and exact differ
            basis, _ = torch.linalg.qr(torch.stack(span, 1))
            gy = ln.w.detach() * yy
            yp = (gy - basis @ (basis.T @ gy)) / ln.w.detach()
            ep = pullback_layernorm(ln, yp, x, "exact")
            for k in APPROX_NORMS:
                perp[k].append(float((pullback_layernorm(ln, yp, x, "approx", k) - ep).norm() / ep.norm()))
    c = torch.tensor(cos)
    out["random_y"] = {"approx_norm": cfg.approx_norm, "cos_min": float(c.min()), "cos_mean": float(c.mean()),
                       "cos_median": float(c.median()), "cos_p05": float(c.quantile(0.05)), "n": len(cos),
                       "derived_cos": (1 - (1 if rms else 2) / d) ** 0.5,
                       "perp_rel_err_max": max(perp[cfg.approx_norm]),
                       "perp_rel_err_max_by_norm": {k: max(v) for k, v in perp.items()}}
    return out


def mlp_task(model, n, refs, refs_neg, cfg: Config) -> list[dict]:
    """Direct-path MLP feature vectors of the subject observable in the three modes, per layer (gated MLPs: no
    linear mode, cos_point_linear is NaN)."""
    if model.cfg.attn_only:
        return []
    rows = []
    modes = ("point", "boundary") if is_gated(model) else ("point", "boundary", "linear")
    for layer in range(model.cfg.n_layers):
        v = {}
        info = {}
        for mode in modes:
            v[mode], inf = feature_vector(model, n, [f"mlp{layer}"], refs, ln=cfg.ln_mode, mlp=mode,
                                          refs_neg=refs_neg, approx_norm=cfg.approx_norm)
            info[mode] = inf.get(f"mlp{layer}", {})
        rows.append({"mlp": f"mlp{layer}", "cos_point_boundary": cosine(v["point"], v["boundary"]),
                     "cos_point_linear": cosine(v["point"], v["linear"]) if "linear" in v else float("nan"),
                     "norm_point": float(v["point"].norm()), "norm_boundary": float(v["boundary"].norm()),
                     "boundary": info["boundary"]})
    return rows


def path_vectors(model, obs: dict, paths, refs, refs_neg, cfg: Config) -> list[dict]:
    """Feature vectors of the best subject paths for the subject and object observables."""
    rows = []
    for path, effect in paths:
        ys, _ = feature_vector(model, obs["subj"], path, refs, ln=cfg.ln_mode, mlp=cfg.mlp_mode, refs_neg=refs_neg,
                               approx_norm=cfg.approx_norm)
        yo, _ = feature_vector(model, obs["obj"], path, refs, ln=cfg.ln_mode, mlp=cfg.mlp_mode, refs_neg=refs_neg,
                               approx_norm=cfg.approx_norm)
        ye, _ = feature_vector(model, obs["subj"], path, refs, ln="exact", mlp=cfg.mlp_mode, refs_neg=refs_neg)
        rows.append({"path": path, "effect": effect, "norm_subj": float(ys.norm()), "cos_subj_obj": cosine(ys, yo),
                     "coupling_subj_obj": coupling(ys, yo), "cos_ln_approx_exact": cosine(ys, ye)})
    return rows


def coupling_task(model, vec: dict, tops: list[Node], keep: torch.Tensor, acts: dict, cfg: Config
                  ) -> tuple[list[dict], dict]:
    """Predicted coupling vs fitted slope of feature scores over held-out tokens (rows where keep: position 0,
    the attention sink with an outlying norm, is skipped)."""
    rows, scatter = [], {}
    for i, h in enumerate(tops):
        x = acts[h.layer][keep].double()
        cov = torch.cov(x.T)
        for a, b in (("subj", "obj"), ("subj", "occu")):
            y1, y2 = vec[a][h.layer, h.head], vec[b][h.layer, h.head]
            s1, s2 = x @ y1, x @ y2
            fit = best_fit(s1, s2)
            rows.append({"label": f"{h} {a}->{b}", "head": str(h), "pair": f"{a}->{b}", "coupling": coupling(y1, y2),
                         "coupling_cov": coupling(y1, y2, cov=cov), "cos": cosine(y1, y2), **fit})
            if i == 0 and b == "obj":
                g = torch.Generator().manual_seed(cfg.seed)
                idx = torch.randperm(len(s1), generator=g)[:cfg.n_scatter]
                scatter = {"scatter_s1": s1[idx].numpy(), "scatter_s2": s2[idx].numpy()}
    return rows, scatter


def debias_task(model, n, probes: list[dict], tok, bias_vec: torch.Tensor, bias_head: Node, cfg: Config,
                occupation_ids: list[int] | None = None) -> dict:
    """Project the bias feature (she−he along the top occupation head, at its input layer) out of the residual
    stream at every position, and (surgical variant) only at occupation-word tokens; measure the occupation bias
    gap and the name-pronoun gap before and after, and the same for a random direction (control)."""
    occ_f = class_prompts(probes, "occupation_pronoun", "p_female", lambda p: p > 0.5, tok, cfg.n_pairs)
    occ_m = class_prompts(probes, "occupation_pronoun", "p_female", lambda p: p < 0.5, tok, cfg.n_pairs)
    nm_f = class_prompts(probes, "pronoun_subj", "gender", "female", tok, cfg.n_pairs)
    nm_m = class_prompts(probes, "pronoun_subj", "gender", "male", tok, cfg.n_pairs)
    hook = f"blocks.{bias_head.layer}.hook_resid_pre"
    rnd = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(cfg.seed + 7), dtype=torch.float64)

    def gaps(hooks):
        b = observable_at_last(model, n, occ_f, hooks).mean() - observable_at_last(model, n, occ_m, hooks).mean()
        m = observable_at_last(model, n, nm_f, hooks).mean() - observable_at_last(model, n, nm_m, hooks).mean()
        return float(b), float(m)

    b0, m0 = gaps([])
    b1, m1 = gaps([(hook, projection_hook(bias_vec))])
    b2, m2 = gaps([(hook, projection_hook(rnd))])
    out_occ = {}
    if occupation_ids:
        ids = torch.tensor(occupation_ids)
        b3, m3 = gaps(lambda toks: [(hook, projection_hook(bias_vec, torch.isin(toks, ids)))])
        out_occ = {"bias_gap_after_occupation_tokens": b3, "name_gap_after_occupation_tokens": m3}
    return {**out_occ,"bias_head": str(bias_head), "hook": hook, "bias_gap_before": b0, "bias_gap_after": b1,
            "name_gap_before": m0, "name_gap_after": m1, "bias_gap_random_dir": b2, "name_gap_random_dir": m2,
            "bias_reduction": 1 - b1 / b0 if b0 else float("nan"),
            "name_reduction": 1 - m1 / m0 if m0 else float("nan"),
            "n_prompts": {"occ_f": len(occ_f), "occ_m": len(occ_m), "name_f": len(nm_f), "name_m": len(nm_m)}}
