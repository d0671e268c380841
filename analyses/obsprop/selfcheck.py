"""The issue's exactness checks, run on the analysed model itself so result.json carries their numbers.

first_order: path feature vector == autograd gradient of the path-restricted observable (frozen attention
             patterns and LN scales) at every source token; ov_dla: per-head OV identity and the direct-logit
             reconstruction of n·logits; isotropic coupling: OLS slope of Gaussian scores vs coupling; linear MLP:
             every MLP mode == W_in W_out y with the activation replaced by the identity.
"""

from __future__ import annotations

import copy

import torch

from .method import feature_vector, head_ov, is_gated, ln_input_hook, parse_node, pullback_head_ov, pullback_mlp
from .observables import pullback_layernorm, pullback_unembed
from .patching import path_function
from .scores import gaussian_slope


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def first_order(model, n: torch.Tensor, path: list[str], cache: dict, last: torch.Tensor, b: int = 0) -> dict:
    """Max relative error between autograd and the composed feature vector over source tokens (paths with at
    most one head; MLPs are position-wise so the source token fixes every reference point)."""
    nodes = [parse_node(model, p) for p in path]
    heads = [i for i, nd in enumerate(nodes) if nd.kind == "attn"]
    if len(heads) > 1:
        return {"path": path, "skipped": "more than one head"}
    i = int(last[b])
    one = {k: v[b:b + 1, : i + 1] for k, v in cache.items() if v.dim() >= 2}
    for k, v in cache.items():
        if k.endswith("hook_pattern"):
            one[k] = v[b:b + 1, :, : i + 1, : i + 1]
    x = one[ln_input_hook(model, nodes[0])].clone().requires_grad_(True)
    with torch.inference_mode(False), torch.enable_grad():
        (g,) = torch.autograd.grad(path_function(model, one, n, path, x, pos=i, freeze_ln=True), x)
    refs = {k: v[0, i] for k, v in one.items() if "hook_resid" in k}
    if heads:
        h = nodes[heads[0]]
        A = one[f"blocks.{h.layer}.attn.hook_pattern"][0, h.head, i]
        srcs = [j for j in range(i + 1) if A[j] > 1e-3][:8]
    else:
        A, srcs = None, [i]
    errs = []
    for j in srcs:
        nr = {str(nd): one[ln_input_hook(model, nd)][0, j] for k, nd in enumerate(nodes) if heads and k <= heads[0]}
        y, _ = feature_vector(model, n, path, refs, ln="frozen", mlp="point", node_refs=nr)
        want = (A[j] if A is not None else 1.0) * y
        errs.append(_rel(g[0, j], want))
    return {"path": path, "max_rel_err": max(errs), "n_sources": len(srcs)}


def ov_dla(model, n: torch.Tensor, tokens: torch.Tensor) -> dict:
    """OV identity per head/source token and the direct-logit reconstruction of n·logits (final LN scale frozen)
    at the last token of one prompt [T]."""
    with torch.inference_mode():
        return _ov_dla(model, n, tokens)


def _ov_dla(model, n: torch.Tensor, tokens: torch.Tensor) -> dict:
    logits, c = model.run_with_cache(tokens[None], names_filter=lambda k: k.endswith((
        "hook_v", "hook_embed", "hook_pos_embed", "hook_mlp_out", "hook_resid_pre", "hook_pattern",
        "hook_resid_post")))
    i = tokens.shape[0] - 1
    L = model.cfg.n_layers
    y_f = pullback_layernorm(model.ln_final, pullback_unembed(model, n), c[f"blocks.{L - 1}.hook_resid_post"][0, i],
                             mode="frozen")
    total = c["hook_embed"][0, i] @ y_f
    if "hook_pos_embed" in c:
        total = total + c["hook_pos_embed"][0, i] @ y_f
    ov_err = 0.0
    for layer in range(L):
        blk = model.blocks[layer]
        total = total + blk.attn.b_O @ y_f
        if not model.cfg.attn_only:
            total = total + c[f"blocks.{layer}.hook_mlp_out"][0, i] @ y_f
        ln1_x = blk.ln1(c[f"blocks.{layer}.hook_resid_pre"][0])
        v = c[f"blocks.{layer}.attn.hook_v"][0]                  # [T, n_kv_heads, d_head] (GQA) or n_heads
        rep = model.cfg.n_heads // v.shape[1]
        for h in range(model.cfg.n_heads):
            A = c[f"blocks.{layer}.attn.hook_pattern"][0, h, i]
            y_h = pullback_head_ov(model, layer, h, y_f)
            _, b_v, w_o = head_ov(model, layer, h)
            bias = b_v @ (w_o @ y_f)
            direct = A * ((v[:, h // rep] @ w_o) @ y_f)             # [T]
            ov = A * (ln1_x @ y_h + bias)
            ov_err = max(ov_err, float((direct - ov).abs().max() / direct.abs().max().clamp_min(1e-300)))
            total = total + ov.sum()
    b_f = getattr(model.ln_final, "b", None)                   # RMSNorm: no bias
    if b_f is not None:
        total = total + b_f @ pullback_unembed(model, n)
    total = total + n.to(model.b_U.dtype) @ model.b_U
    obs = float(logits[0, i].double() @ n.double())
    return {"ov_identity_max_rel_err": ov_err, "dla_total": float(total), "observable": obs,
            "dla_rel_err": abs(float(total) - obs) / max(abs(obs), 1e-300)}


def linear_mlp(model, y: torch.Tensor, x0: torch.Tensor, layer: int = 0) -> dict:
    """With the MLP activation replaced by the identity (on a copy), every mode equals W_in W_out y (not for a
    gated MLP, which is then quadratic)."""
    if model.cfg.attn_only:
        return {"skipped": "attention-only model"}
    if is_gated(model):
        return {"skipped": "gated MLP (no linear MLP mode)"}
    m = copy.deepcopy(model)
    mlp = m.blocks[layer].mlp
    mlp.act_fn = lambda t: t
    want = mlp.W_in.detach() @ (mlp.W_out.detach() @ y)
    with torch.no_grad():
        f0 = float(mlp(x0.view(1, 1, -1)).view(-1) @ y)
    step = (abs(f0) + 1.0) / float(want @ want) * want
    out: dict = {"layer": layer}
    for mode in ("point", "boundary", "linear"):
        v, info = pullback_mlp(m, layer, y, mode=mode, x_ref=x0, x_pos=x0 + step, x_neg=x0 - step)
        out[f"{mode}_rel_err"] = _rel(v, want)
        if mode == "boundary":
            out["boundary_residual"], out["boundary_crossed"] = info["residual"], info["crossed"]
    return out


def isotropic_coupling(y1: torch.Tensor, y2: torch.Tensor, n_samples: int, seed: int) -> dict:
    """OLS slope of x·y2 on x·y1 for x ~ N(0, I) next to C(y1, y2)."""
    from .method import coupling

    return {"coupling": coupling(y1, y2), "slope": gaussian_slope(y1, y2, n_samples, seed=seed),
            "n_samples": n_samples}
