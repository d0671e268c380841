"""The obsprop studies, in the paper's order, each a function returning a small dataclass.

`studies.run_tasks` chains them: observables and prompt pairs (§3), greedy path patching, reference points, head feature
vectors through OV and LayerNorm (§3.2, §4), the LayerNorm/MLP/path-vector studies, held-out couplings against
regression slopes and the zero-data gender direction against probes (§4.1, §5), debiasing, and the exact
self-checks, and turns the result into the summary, details and arrays of the Result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from interp import progress
from interp.errors import ConfigError

from .config import Config
from .method import Node, cosine, feature_vector, final_hook, ln_input_hook
from .observables import observable, pullback_layernorm, pullback_unembed
from .patching import greedy_paths, run_cache
from .prompts import (
    class_prompts,
    encode,
    gender_pairs,
    load_ground,
    name_token_ids,
    occupation_pairs,
    occupation_tokens,
    pad_right,
)
from .tasks import (
    OBS_NAMES,
    gender_baselines,
    head_source_ref,
    head_vectors,
    heldout_activations,
    mean_refs,
    obs_values,
    top_heads,
)


@dataclass
class Tasks:
    """Observables (unembedding directions) and the counterfactual prompt pairs with their caches."""

    feats: dict
    probes: list
    obs: dict
    pairs: dict
    caches: dict
    n_task: dict
    details: dict = field(default_factory=dict)


@dataclass
class Paths:
    """Greedy path search per task, single-node effects, and the per-head patching effects [task, L, H]."""

    search: dict
    singles: dict
    patch: torch.Tensor


@dataclass
class References:
    """Mean residual streams at the prompts' last tokens: the points the LayerNorm/MLP pullbacks are taken at."""

    pos_caches: dict
    refs: dict
    refs_neg: dict
    ref_task: dict
    ref_caches: dict


@dataclass
class HeadFeatures:
    """Every head's feature vector per observable, their norms and cosines, and the carrying heads."""

    vec: dict
    norms: torch.Tensor
    norms_noln: torch.Tensor
    cos_heads: torch.Tensor
    raw_cos: torch.Tensor
    tops: list
    cos_top: torch.Tensor
    details: dict = field(default_factory=dict)

    @property
    def top(self):
        return self.tops[0]


@dataclass
class Heldout:
    """Couplings against slopes on held-out text, the gender baselines and the debiasing study."""

    coupling: list
    scatter: dict
    n_tokens: int
    details: dict = field(default_factory=dict)


def task_setup(cfg: Config, model) -> Tasks:
    tok = model.tokenizer
    progress.stage("obsprop", "observables and prompt pairs")
    feats, probes = load_ground(cfg.probes_dir)
    prons = feats["pronouns"]
    occ_f, occ_m = occupation_tokens(feats, tok)
    code = feats["code_languages"]
    obs = {
        "subj": observable(model, [prons["subject"]["female"]], [prons["subject"]["male"]]),
        "obj": observable(model, [prons["object"]["female"]], [prons["object"]["male"]]),
        "occu": observable(model, occ_f, occ_m),
        "code": observable(model, [code["py"]["comment_marker"]], [code["c"]["comment_marker"]]),
        "code_block": observable(model, [code["py"]["block_opener"]], [code["c"]["block_opener"]]),
    }
    pairs = {"subj": gender_pairs(feats, probes, "pronoun_subj", tok, cfg.n_pairs),
             "obj": gender_pairs(feats, probes, "pronoun_obj", tok, cfg.n_pairs),
             "occu": occupation_pairs(feats, probes, tok, cfg.n_pairs)}
    caches = {k: (run_cache(model, tp)[1], run_cache(model, tn)[1], last) for k, (tp, tn, last) in pairs.items()}
    n_task = {"subj": obs["subj"], "obj": obs["obj"], "occu": obs["subj"]}   # occu pairs: the bias (she-he)
    details = {"observables": {k: {"n_tokens": int(v.abs().sum())} for k, v in obs.items()}}
    details["logit_gap"] = {}
    for k, (tp, tn, last) in pairs.items():
        vp, vn = obs_values(model, n_task[k], tp, tn, last)
        details["logit_gap"][k] = {"pos": vp, "neg": vn, "gap": vp - vn, "n_pairs": len(last)}

    return Tasks(feats, probes, obs, pairs, caches, n_task, details)


def path_search(cfg: Config, model, t: Tasks) -> Paths:
    """Greedy path patching from each task's observable back through the heads (depth and beam from cfg)."""
    n_task, caches = t.n_task, t.caches
    progress.stage("obsprop", f"greedy path patching (depth {cfg.path_depth}, beam {cfg.beam})")
    # --- greedy path patching ---------------------------------------------------------------------------------
    search, singles = {}, {}
    for k in ("subj", "obj", "occu"):
        cp, cn, last = caches[k]
        search[k], singles[k] = greedy_paths(model, n_task[k], [(cp, cn)], depth=cfg.path_depth, beam=cfg.beam,
                                             pos=last)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    patch = torch.tensor([[[singles[k][f"attn{lay}.{h}"] for h in range(H)] for lay in range(L)]
                          for k in ("subj", "obj", "occu")])
    return Paths(search, singles, patch)


def reference_points(cfg: Config, model, t: Tasks) -> References:
    """The positive and negative prompts' mean residuals per task (code observables: Python vs C prompts)."""
    caches, probes, tok = t.caches, t.probes, model.tokenizer
    # --- reference points ---------------------------------------------------------------------------------------
    pos_caches = {k: [(cp, last)] for k, (cp, _, last) in caches.items()}
    neg_caches = {k: [(cn, last)] for k, (_, cn, last) in caches.items()}
    refs = {k: mean_refs(model, pos_caches[k]) for k in caches}
    refs_neg = {k: mean_refs(model, neg_caches[k]) for k in caches}
    py_toks, py_last = pad_right(class_prompts(probes, "code_comment_marker", "lang", "py", tok, cfg.n_pairs))
    code_caches = [(run_cache(model, py_toks)[1], py_last)]
    refs["code"] = refs["code_block"] = mean_refs(model, code_caches)
    c_toks, c_last = pad_right(class_prompts(probes, "code_comment_marker", "lang", "c", tok, cfg.n_pairs))
    refs_neg["code"] = refs_neg["code_block"] = mean_refs(model, [(run_cache(model, c_toks)[1], c_last)])
    ref_task = {"subj": "subj", "obj": "obj", "occu": "occu", "code": "code", "code_block": "code"}
    ref_caches = {"subj": pos_caches["subj"], "obj": pos_caches["obj"], "occu": pos_caches["occu"],
                  "code": code_caches, "code_block": code_caches}
    return References(pos_caches, refs, refs_neg, ref_task, ref_caches)


def head_features(cfg: Config, model, t: Tasks, paths: Paths, r: References) -> HeadFeatures:
    """Feature vectors of every head for every observable, with and without LayerNorm; the carrying heads."""
    obs, singles = t.obs, paths.singles
    refs, refs_neg, ref_task, ref_caches = r.refs, r.refs_neg, r.ref_task, r.ref_caches
    L, H = model.cfg.n_layers, model.cfg.n_heads
    details: dict = {}
    progress.stage("obsprop", "feature vectors of every head (OV circuit, LayerNorm)")
    # --- head feature vectors, norms and cosines ----------------------------------------------------------------
    vec = {k: head_vectors(model, obs[k], refs[ref_task[k]], ref_caches[k], cfg.ln_mode, cfg.approx_norm,
                           cfg.ln_final, refs_neg[ref_task[k]]) for k in OBS_NAMES}
    vec_noln = {k: head_vectors(model, obs[k], refs[ref_task[k]], ref_caches[k], "none", cfg.approx_norm)
                for k in OBS_NAMES}
    norms = torch.stack([vec[k].norm(dim=-1) for k in OBS_NAMES])
    norms_noln = torch.stack([vec_noln[k].norm(dim=-1) for k in OBS_NAMES])
    cos_heads = torch.tensor([[cosine(vec["subj"][a, b], vec["obj"][a, b]) for b in range(H)] for a in range(L)])
    raw = {k: pullback_unembed(model, obs[k]) for k in OBS_NAMES}
    raw_cos = torch.tensor([[cosine(raw[a], raw[b]) for b in OBS_NAMES] for a in OBS_NAMES])
    tops = top_heads(singles["subj"], cfg.top_heads, min_frac=cfg.carry_frac)
    top = tops[0]
    top_vecs = torch.stack([vec[k][top.layer, top.head] for k in OBS_NAMES])
    cos_top = torch.tensor([[cosine(a, b) for b in top_vecs] for a in top_vecs])
    carry = [{"head": str(h), "subj_effect": singles["subj"][str(h)], "obj_effect": singles["obj"][str(h)],
              "cos_subj_obj": float(cos_heads[h.layer, h.head]), "cos_subj_occu":
              cosine(vec["subj"][h.layer, h.head], vec["occu"][h.layer, h.head]),
              "cos_code_code_block": cosine(vec["code"][h.layer, h.head], vec["code_block"][h.layer, h.head]),
              "norm_subj": float(norms[0, h.layer, h.head]), "norm_obj": float(norms[1, h.layer, h.head])}
             for h in tops]
    details["carrying_heads"] = carry
    code_heads = top_heads({f"attn{a}.{b}": float(norms[3, a, b]) for a in range(L) for b in range(H)}, 3)
    details["code_heads_by_norm"] = [{"head": str(h), "cos_code_code_block": cosine(
        vec["code"][h.layer, h.head], vec["code_block"][h.layer, h.head])} for h in code_heads]
    return HeadFeatures(vec, norms, norms_noln, cos_heads, raw_cos, tops, cos_top, details)


def circuit_studies(cfg: Config, model, t: Tasks, paths: Paths, r: References, hf: HeadFeatures) -> dict:
    """The LayerNorm direction study, the MLP pullback study and the path feature vectors."""
    obs, search, refs, refs_neg, pos_caches, top = t.obs, paths.search, r.refs, r.refs_neg, r.pos_caches, hf.top
    details: dict = {}
    from .tasks_extra import ln_task, mlp_task, path_vectors

    details["ln"] = ln_task(model, obs["subj"], refs["subj"], refs_neg["subj"], pos_caches["subj"], top, cfg)
    details["mlp"] = mlp_task(model, obs["subj"], refs["subj"], refs_neg["subj"], cfg)
    details["path_vectors"] = path_vectors(model, obs, search["subj"][:3], refs["subj"], refs_neg["subj"], cfg)
    return details


def heldout_study(cfg: Config, model, t: Tasks, paths: Paths, r: References, hf: HeadFeatures) -> Heldout:
    """Couplings vs regression slopes on held-out text; zero-data gender direction vs 30 + 30 probes; debiasing."""
    obs, feats, probes, tok = t.obs, t.feats, t.probes, model.tokenizer
    vec, tops, top, singles, refs, pos_caches = hf.vec, hf.tops, hf.top, paths.singles, r.refs, r.pos_caches
    details: dict = {}
    from .tasks_extra import coupling_task, debias_task
    progress.stage("obsprop", f"couplings and baselines on {cfg.score_tokens} held-out tokens")
    # --- held-out scores: coupling vs slope; gender direction baselines -------------------------------------------
    layers = sorted({h.layer for h in tops})
    toks, positions, acts = heldout_activations(model, tok, cfg, layers)
    cpl, scatter = coupling_task(model, vec, tops, positions > 0, acts, cfg)
    details["coupling"] = cpl
    ids = name_token_ids(feats, tok)
    x_top = acts[top.layer].double()
    fem = torch.isin(toks, torch.tensor(ids["female"]))
    mal = torch.isin(toks, torch.tensor(ids["male"]))
    if int(fem.sum()) <= 2 * cfg.n_train or int(mal.sum()) <= 2 * cfg.n_train:
        raise ConfigError(f"only {int(fem.sum())} female / {int(mal.sum())} male name tokens in the held-out "
                          "sample", hint="raise score_tokens")
    named = fem | mal
    details["gender"] = gender_baselines(vec["subj"][top.layer, top.head], x_top[named], toks[named],
                                         ids["female"], ids["male"], cfg)
    details["gender"]["layer"] = top.layer
    hb = top_heads(singles["occu"], 1)[0]
    bias_vec, _ = feature_vector(model, obs["subj"], [str(hb)], refs["occu"], ln=cfg.ln_mode,
                                 approx_norm=cfg.approx_norm,
                                 node_refs={str(hb): head_source_ref(model, pos_caches["occu"], hb.layer, hb.head)})
    occ_ids = [i for o in feats["occupations"] for i in [encode(tok, " " + o)] if len(i) == 1]
    details["debias"] = debias_task(model, obs["subj"], probes, tok, bias_vec, hb, cfg,
                                    occupation_ids=[i[0] for i in occ_ids])
    return Heldout(cpl, scatter, int(toks.numel()), details)


def self_checks(cfg: Config, model, t: Tasks, paths: Paths, r: References, hf: HeadFeatures) -> dict:
    """Exact identities on this model: first-order paths, OV/direct-logit attribution, isotropic coupling,
    the linear-MLP pullback."""
    obs, caches, pairs, search, refs, vec, top = t.obs, t.caches, t.pairs, paths.search, r.refs, hf.vec, hf.top
    details: dict = {}
    from .selfcheck import first_order, isotropic_coupling, linear_mlp, ov_dla

    cp, _, last = caches["subj"]
    fo = [first_order(model, obs["subj"], p, cp, last) for p, _ in search["subj"][:3]]
    y_f = pullback_layernorm(model.ln_final, pullback_unembed(model, obs["subj"]),
                             refs["subj"][final_hook(model)], "approx")
    x0 = model.blocks[0].ln2(refs["subj"][ln_input_hook(model, Node("mlp", 0))].view(1, 1, -1)).view(-1) \
        if not model.cfg.attn_only else None
    details["selfcheck"] = {
        "first_order": fo,
        "ov_dla": ov_dla(model, obs["subj"], pairs["subj"][0][0, : int(last[0]) + 1]),
        "isotropic_coupling": isotropic_coupling(vec["subj"][top.layer, top.head], vec["obj"][top.layer, top.head],
                                                 cfg.n_gauss, cfg.seed),
        "linear_mlp": linear_mlp(model, y_f, x0) if x0 is not None else {"skipped": "attention-only model"},
    }
    return details["selfcheck"]
