"""Path patching along a path of heads/MLPs and the greedy path search (the paper's `patch_get_max_paths`).

The effect of a path [c_k, ..., c_1] is computed by sending the sender c_k's output change (negative prompt
minus positive prompt) only through the receivers c_{k-1}, ..., c_1 to the logits; everything else stays at the
positive prompt's values. Attention patterns are frozen at the positive prompt (the OV-only view of the paper);
LayerNorms are recomputed unless `freeze_ln` freezes their scales at the cached values.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .method import Node, _feeds, final_hook, head_ov, ln_input_hook, ln_module, parse_node
from .observables import is_rms

CACHE_HOOKS = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_pattern", "hook_scale")


def run_cache(model, tokens: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits and the hooks obsprop needs (residual streams, attention patterns, LN scales)."""
    with torch.inference_mode():
        logits, cache = model.run_with_cache(tokens, names_filter=lambda k: k.endswith(CACHE_HOOKS))
    return logits.clone(), {k: v.clone() for k, v in cache.items()}


def _ln(model, lnm: torch.nn.Module, x: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """Apply the norm `lnm`, optionally with its scale frozen to `scale`: w⊙(x − mean x)/scale + b (LayerNorm) or
    w⊙x/scale (RMSNorm)."""
    if model.cfg.normalization_type is None:
        return x
    if scale is None:
        return lnm(x)
    xc = x if is_rms(lnm) else x - x.mean(-1, keepdim=True)
    w = getattr(lnm, "w", None)
    b = getattr(lnm, "b", None)
    out = xc / scale
    out = out * w if w is not None else out
    return out + b if b is not None else out


def _scale_hook(node: Node) -> str:
    return f"blocks.{node.layer}.ln{1 if node.kind == 'attn' else 2}.hook_scale"


def component_out(model, cache: dict, node: Node, resid_in: torch.Tensor | None = None,
                  pattern: torch.Tensor | None = None, freeze_ln: bool = False) -> torch.Tensor:
    """Output [b, pos, d_model] that node writes to the residual stream, given its LN input `resid_in` (default:
    cached), with attention patterns frozen (default: the cache's). Heads exclude the shared bias b_O."""
    x = cache[ln_input_hook(model, node)] if resid_in is None else resid_in
    scale = cache.get(_scale_hook(node)) if freeze_ln else None
    h = _ln(model, ln_module(model, node), x, scale)
    if node.kind == "mlp":
        return model.blocks[node.layer].mlp(h)
    pat = cache[f"blocks.{node.layer}.attn.hook_pattern"][:, node.head] if pattern is None else pattern
    w_v, b_v, w_o = head_ov(model, node.layer, node.head)       # the value head this query head reads (GQA)
    v = h @ w_v + b_v                                           # [b, k, d_head]
    return (pat @ v) @ w_o                                      # [b, q, d_model]


def at_pos(t: torch.Tensor, pos: int | torch.Tensor) -> torch.Tensor:
    """t[:, pos] for an int, or t[i, pos[i]] per prompt for a LongTensor [b] (right-padded batches: the
    observable sits at each prompt's own last token; causal attention makes right padding exact)."""
    if isinstance(pos, int):
        return t[:, pos]
    return t[torch.arange(t.shape[0]), pos]


def propagate(model, cache: dict, n: torch.Tensor, receivers: Sequence[Node], delta: torch.Tensor,
              pos: int | torch.Tensor = -1, freeze_ln: bool = False) -> torch.Tensor:
    """Send a residual change `delta` [b, pos, d] through `receivers` (forward order) to the observable at
    position `pos` (int, or [b] per prompt); other inputs stay at the cached run. Returns the observable change
    per prompt [b]."""
    for node in receivers:
        x = cache[ln_input_hook(model, node)]
        delta = (component_out(model, cache, node, x + delta, freeze_ln=freeze_ln)
                 - component_out(model, cache, node, x, freeze_ln=freeze_ln))
    xf = at_pos(cache[final_hook(model)], pos)
    scale = at_pos(cache["ln_final.hook_scale"], pos) if freeze_ln and "ln_final.hook_scale" in cache else None
    y = model.W_U @ n.to(model.W_U.dtype)
    return (_ln(model, model.ln_final, xf + at_pos(delta, pos), scale)
            - _ln(model, model.ln_final, xf, scale)) @ y


def path_effect(model, cache_pos: dict, cache_neg: dict, n: torch.Tensor, path: Sequence[str | Node],
                pos: int | torch.Tensor = -1, freeze_ln: bool = False) -> torch.Tensor:
    """Observable drop obs(pos prompt) − obs(pos prompt with the path patched from the neg prompt), per pair. [b]"""
    nodes = [parse_node(model, p) for p in path]
    with torch.no_grad():
        delta = component_out(model, cache_neg, nodes[0]) - component_out(model, cache_pos, nodes[0])
        return -propagate(model, cache_pos, n, nodes[1:], delta, pos=pos, freeze_ln=freeze_ln)


def path_function(model, cache: dict, n: torch.Tensor, path: Sequence[str | Node], x: torch.Tensor,
                  pos: int | torch.Tensor = -1, freeze_ln: bool = False) -> torch.Tensor:
    """Observable change (summed over the batch) when the first node's LN input is x instead of the cached one,
    with the change sent only along the path: the function whose gradient the path feature vector is."""
    nodes = [parse_node(model, p) for p in path]
    delta = component_out(model, cache, nodes[0], x, freeze_ln=freeze_ln) - component_out(
        model, cache, nodes[0], freeze_ln=freeze_ln)
    return propagate(model, cache, n, nodes[1:], delta, pos=pos, freeze_ln=freeze_ln).sum()


def all_nodes(model) -> list[Node]:
    """Every head and MLP of the model, in forward order."""
    out: list[Node] = []
    for layer in range(model.cfg.n_layers):
        out += [Node("attn", layer, h) for h in range(model.cfg.n_heads)]
        if not model.cfg.attn_only:
            out.append(Node("mlp", layer))
    return out


def group_effect(model, groups: Sequence[tuple[dict, dict]], n: torch.Tensor, path: Sequence[str | Node],
                 pos: int | torch.Tensor = -1) -> float:
    """Mean path-patching effect over prompt pairs held in several (cache_pos, cache_neg) length groups."""
    vals = torch.cat([path_effect(model, cp, cn, n, path, pos) for cp, cn in groups])
    return float(vals.mean())


def greedy_paths(model, n: torch.Tensor, groups: Sequence[tuple[dict, dict]], depth: int = 2, beam: int = 5,
                 pos: int | torch.Tensor = -1) -> tuple[list[tuple[list[str], float]], dict[str, float]]:
    """Beam search over paths ending at the logits, scored by the mean path-patching effect over prompt pairs
    (`groups`: (cache_pos, cache_neg) per length group). Returns (best paths with scores, best first; the
    depth-1 score of every node)."""
    nodes = all_nodes(model)
    single = {str(c): group_effect(model, groups, n, [c], pos) for c in nodes}
    frontier = sorted(([c] for c in nodes), key=lambda p: -single[str(p[0])])[:beam]
    scored = [([str(c) for c in p], single[str(p[0])]) for p in frontier]
    for _ in range(depth - 1):
        cand = []
        for p in frontier:
            for c in nodes:
                if _feeds(model, c, p[0]):
                    q = [c] + p
                    cand.append((q, group_effect(model, groups, n, q, pos)))
        cand.sort(key=lambda t: -t[1])
        frontier = [q for q, _ in cand[:beam]]
        scored += [([str(c) for c in q], s) for q, s in cand[:beam]]
        if not frontier:
            break
    scored.sort(key=lambda t: -t[1])
    return scored, single
