"""The embedded-model tasks: pronoun, occupation-bias and code observables; paths; couplings; baselines; debias."""

from __future__ import annotations

import torch

from interp.config_checks import check_context
from interp.errors import ConfigError, InterpError

from .config import Config
from .method import Node, check_norm, cosine, feature_vector, is_gated, is_rms_model, mean_scale_ref
from .patching import at_pos
from .scores import (
    linear_probe,
    mean_difference,
    separation,
)

OBS_NAMES = ("subj", "obj", "occu", "code", "code_block")


def load_model(cfg: Config, model=None):
    """The model as a HookedTransformer in float64 (linear algebra and boundary searches in double precision).

    A natively run Hugging Face model (Mistral, Qwen2, Qwen3, Phi-3) is converted to transformer-lens with its
    weights unprocessed, so activations are the HF model's (`interp.models.as_transformer_lens`); the result then
    carries `converted_from`, which the run's provenance records. Other models are refused in one line.
    """
    from interp import models
    from interp.models.native import NativeModel
    from interp.models.tl_convert import convertible_hint

    if model is None:
        name = cfg.model or models.DEFAULT_MODEL
        model = models.load(name, step=None if cfg.step < 0 else cfg.step, device=cfg.device, dtype="float64")
    if isinstance(model, NativeModel):
        try:
            model = models.as_transformer_lens(model, device=cfg.device, dtype=torch.float64)
        except InterpError as e:
            raise ConfigError(f"obsprop reads transformer-lens weights (per-head OV circuits, norm gains, MLP "
                              f"modules), and {e.message}", hint=e.hint) from None
    if not hasattr(model, "cfg") or not hasattr(model, "run_with_cache"):
        raise ConfigError(f"obsprop needs a transformer-lens HookedTransformer: its pullbacks read the attention "
                          f"weights, OV circuits and LayerNorm scales of TL blocks, and {type(model).__name__} "
                          "exposes none of them", hint=convertible_hint())
    if getattr(model, "tokenizer", None) is None:
        raise ConfigError("the model has no tokenizer", hint="obsprop builds observables from token strings")
    check_norm(model)
    if cfg.mlp_mode == "linear" and is_gated(model):
        raise ConfigError("mlp_mode 'linear' (W_in W_out y) has no meaning for this model's gated MLPs",
                          hint="use mlp_mode 'point' or 'boundary'")
    if model.cfg.dtype != torch.float64:
        model = model.to(torch.float64, print_details=False)  # transformer-lens prints "Changing model dtype" else
        model.cfg.dtype = torch.float64
    return model.eval()


def conversion_note(model) -> str | None:
    """A sentence for the provenance when the model was converted from a natively run HF model, else None."""
    arch = getattr(model, "converted_from", None)
    if arch is None:
        return None
    return (f"converted from {arch} (run natively by interp) to a transformer-lens HookedTransformer with "
            "unprocessed weights, for the weight-based pullbacks (OV circuits, norm gains, MLP modules)")


def mean_refs(model, sets: list[tuple[dict, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Residual streams at each prompt's last token over the prompts of (cache, last-index) sets: their mean,
    at the prompts' mean norm scale (mean_scale_ref; the scale of the mean vector is smaller)."""
    rows: dict[str, list[torch.Tensor]] = {}
    for c, last in sets:
        for k, v in c.items():
            if "hook_resid" in k:
                rows.setdefault(k, []).append(at_pos(v, last))
    return {k: mean_scale_ref(torch.cat(v), model.cfg.eps, not is_rms_model(model)) for k, v in rows.items()}


def head_source_ref(model, sets: list[tuple[dict, torch.Tensor]], layer: int, head: int) -> torch.Tensor:
    """The LN input a head reads most from the last token: mean over prompts of the residual at the argmax source
    token, at those residuals' mean LN scale (mean_scale_ref)."""
    xs = []
    for c, last in sets:
        A = at_pos(c[f"blocks.{layer}.attn.hook_pattern"][:, head], last)          # [b, k]
        j = A.argmax(-1)
        xs.append(c[f"blocks.{layer}.hook_resid_pre"][torch.arange(len(j)), j])
    return mean_scale_ref(torch.cat(xs), model.cfg.eps, not is_rms_model(model))


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
