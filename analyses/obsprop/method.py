"""Feature vectors of components and paths, coupling coefficients (Dunefsky & Cohan 2024, §3–4).

A path is a list of nodes in forward order, e.g. ["attn0.3", "mlp1", "attn2.1"]: the signal enters the first
node, flows through each, and ends in the logits. Its feature vector y lives at the residual stream that feeds
the first node (before that node's LayerNorm or RMSNorm): y·Δx ≈ the change of the observable along the path.

Models: transformer-lens HookedTransformers with pre-norm blocks, LayerNorm or RMSNorm (natively run Mistral, Qwen2,
Qwen3, Phi-3 folders are converted first, see interp.models.as_transformer_lens). Grouped-query attention: query
head h reads key/value head h // (n_heads / n_kv_heads) (`head_ov`); gated MLPs go through the block's own MLP
module (modes point / boundary), their 'linear' mode is refused (see pullback_mlp).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from interp.errors import ConfigError

from .observables import (
    find_boundary,
    ln_final_boundary,
    pullback_layernorm,
    pullback_unembed,
)

MLP_MODES = ("point", "boundary", "linear")


@dataclass(frozen=True)
class Node:
    """One component: an attention head (kind "attn", layer, head) or an MLP (kind "mlp", layer)."""

    kind: str
    layer: int
    head: int = -1

    def __str__(self) -> str:
        return f"attn{self.layer}.{self.head}" if self.kind == "attn" else f"mlp{self.layer}"


_NODE_RE = re.compile(r"^(?:attn|a|L)(\d+)[.H](\d+)$|^(?:mlp|m|M)(\d+)$")


def parse_node(model, node: str | Node) -> Node:
    """'attn3.1' / 'mlp2' (or a Node) -> Node, checked against the model's shape."""
    if isinstance(node, Node):
        out = node
    else:
        m = _NODE_RE.match(str(node).strip())
        if not m:
            raise ConfigError(f"cannot parse path node {node!r}", hint="write heads as 'attn3.1', MLPs as 'mlp2'")
        out = Node("attn", int(m[1]), int(m[2])) if m[1] is not None else Node("mlp", int(m[3]))
    cfg = model.cfg
    if not 0 <= out.layer < cfg.n_layers or (out.kind == "attn" and not 0 <= out.head < cfg.n_heads):
        raise ConfigError(f"node {out} does not exist in a {cfg.n_layers}-layer, {cfg.n_heads}-head model")
    if out.kind == "mlp" and cfg.attn_only:
        raise ConfigError(f"node {out}: the model is attention-only", hint="use attention heads only")
    return out


def ln_input_hook(model, node: Node) -> str:
    """Hook name of the residual stream that node's LayerNorm reads."""
    if node.kind == "attn" or model.cfg.parallel_attn_mlp:
        return f"blocks.{node.layer}.hook_resid_pre"
    return f"blocks.{node.layer}.hook_resid_mid"


def ln_module(model, node: Node) -> torch.nn.Module:
    """The LayerNorm in front of a node (ln1 for heads, ln2 for MLPs)."""
    blk = model.blocks[node.layer]
    return blk.ln1 if node.kind == "attn" else blk.ln2


def final_hook(model) -> str:
    """Hook name of the residual stream that ln_final reads."""
    return f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"


NORMS = (None, "LN", "LNPre", "RMS", "RMSPre")


def check_norm(model) -> None:
    """LayerNorm (LN, LNPre), RMSNorm (RMS, RMSPre) or no normalisation, in front of each block's attention and MLP
    only: the pullbacks take one norm per node, so post-norm blocks (Gemma 2, OLMo 2) are refused."""
    nt = model.cfg.normalization_type
    if nt not in NORMS:
        raise ConfigError(f"normalization_type {nt!r} is not supported by obsprop",
                          hint="use a LayerNorm or RMSNorm model")
    if getattr(model.cfg, "use_normalization_before_and_after", False):
        raise ConfigError("obsprop's pullbacks take one norm in front of each node; this model also normalises "
                          "the attention / MLP outputs (post-norm blocks)", hint="use a pre-norm model")


def is_rms_model(model) -> bool:
    """Whether the model's norms are RMSNorms (no centring): reference points then keep their mean."""
    return str(model.cfg.normalization_type or "").startswith("RMS")


def is_gated(model) -> bool:
    """Whether the MLPs are gated (W_out (act(x W_gate) ⊙ x W_in), Llama-like)."""
    return bool(getattr(model.cfg, "gated_mlp", False))


def head_ov(model, layer: int, head: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W_V [d_model, d_head], b_V [d_head], W_O [d_head, d_model]) of query head `head`.

    Grouped-query attention stores n_kv_heads value heads (`_W_V`) and query head h reads value head
    h // (n_heads / n_kv_heads), as Hugging Face's repeat_kv (and transformer-lens' repeat_interleave `W_V`) do;
    indexing `_W_V` directly avoids materialising the repeated [n_heads, d_model, d_head] tensor."""
    attn = model.blocks[layer].attn
    rep = getattr(attn, "repeat_kv_heads", None)
    if rep is not None:
        kv = head // rep
        return attn._W_V[kv], attn._b_V[kv], attn.W_O[head]
    return attn.W_V[head], attn.b_V[head], attn.W_O[head]


def pullback_head_ov(model, layer: int, head: int, y: torch.Tensor) -> torch.Tensor:
    """OV feature vector W_V[h] W_O[h] y (the paper's `get_attn_normal`; QK ignored). [d_model] (ln1 output)"""
    w_v, _, w_o = head_ov(model, layer, head)
    return w_v.detach() @ (w_o.detach() @ y.to(w_o.dtype))


def _mlp_fn(model, layer: int):
    """x [d_model] (ln2 output) -> MLP output [d_model], through the model's own MLP module."""
    mlp = model.blocks[layer].mlp

    def f(x: torch.Tensor) -> torch.Tensor:
        return mlp(x.reshape(1, 1, -1).to(model.cfg.dtype)).reshape(-1)

    return f


def mlp_grad(model, layer: int, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """∇_x y·MLP(x) at x (autograd through the model's MLP). [d_model]"""
    f = _mlp_fn(model, layer)
    with torch.inference_mode(False), torch.enable_grad():
        xx = x.detach().clone().to(model.cfg.dtype).requires_grad_(True)
        (g,) = torch.autograd.grad(f(xx) @ y.detach().to(xx.dtype), xx)
    return g.detach()


def pullback_mlp(model, layer: int, y: torch.Tensor, mode: str = "point", x_ref: torch.Tensor | None = None,
                 x_pos: torch.Tensor | None = None, x_neg: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, dict]:
    """MLP feature vector on the MLP input (ln2 output). Returns (vector, info).

    point:    ∇_x y·MLP(x) at x_ref
    boundary: ∇ at the point x_t of segment [x_neg, x_pos] where y·MLP(x_t) = 0 (`domain_boundary_intersection`)
    linear:   W_in W_out y, the activation treated as the identity (`get_fake_mlp_normal`). Refused for a gated
              MLP: with the activation as the identity it is (x W_gate) ⊙ (x W_in) W_out, quadratic in x, so it has
              no input-independent linear map.
    """
    if mode not in MLP_MODES:
        raise ConfigError(f"unknown MLP mode {mode!r}", hint=f"one of {MLP_MODES}")
    mlp = model.blocks[layer].mlp
    if mode == "linear" and is_gated(model):
        raise ConfigError("MLP mode 'linear' (W_in W_out y) has no meaning for a gated MLP: with the activation as "
                          "the identity it is quadratic in its input", hint="use mlp_mode 'point' or 'boundary'")
    if mode == "linear":
        return mlp.W_in.detach() @ (mlp.W_out.detach() @ y.to(mlp.W_out.dtype)), {"mode": "linear"}
    if mode == "point":
        if x_ref is None:
            raise ConfigError("MLP mode 'point' needs x_ref", hint="pass the MLP input at the token")
        return mlp_grad(model, layer, y, x_ref), {"mode": "point"}
    if x_pos is None or x_neg is None:
        raise ConfigError("MLP mode 'boundary' needs x_pos and x_neg", hint="pass two prompts' MLP inputs")
    f = _mlp_fn(model, layer)
    yy = y.detach().to(model.cfg.dtype)
    x_t, info = find_boundary(lambda x: f(x) @ yy, x_pos, x_neg)
    return mlp_grad(model, layer, y, x_t), {"mode": "boundary", **info}


def mean_scale_ref(x: torch.Tensor, eps: float, centred: bool = True) -> torch.Tensor:
    """Mean of the rows of x [n, d] with its centred part rescaled so that its LN scale is the rows' mean LN scale.

    The LN factor must be the token's own scale or the mean over tokens (the paper's
    `propagate_normal_through_LayerNorm`); the mean vector's scale is smaller (token directions partly cancel).
    The direction of the centred mean, hence the LN output direction, is kept. [d]

    centred=False (RMSNorm, s = sqrt(|x|²/d + eps)): the whole mean m is rescaled, m·sqrt(d(s̄² − eps))/|m|, so
    its RMS scale is the rows' mean scale s̄ and the RMSNorm output direction m/|m| is kept."""
    x = x.detach()
    d = x.shape[-1]
    if not centred:
        s_mean = (x.pow(2).mean(-1) + eps).sqrt().mean()
        m = x.mean(0)
        return m * (((s_mean * s_mean - eps).clamp_min(0.0) * d).sqrt() / m.norm().clamp_min(1e-12))
    xc = x - x.mean(-1, keepdim=True)
    s_mean = (xc.pow(2).mean(-1) + eps).sqrt().mean()
    m = x.mean(0)
    mc = m - m.mean()
    target = ((s_mean * s_mean - eps).clamp_min(0.0) * d).sqrt()          # centred norm whose LN scale is s_mean
    return m - mc + mc * (target / mc.norm().clamp_min(1e-12))


def refs_from_cache(model, cache: Mapping[str, torch.Tensor], pos: int = -1, batch: int | None = None
                    ) -> dict[str, torch.Tensor]:
    """Residual streams at one position keyed by hook name (one prompt, or over the batch the mean residual at
    the prompts' mean norm scale, see mean_scale_ref): the reference points for norm factors and MLP gradients."""
    out = {}
    for k, v in cache.items():
        if "hook_resid" in k:
            v = v[:, pos] if v.dim() == 3 else v
            out[k] = (mean_scale_ref(v, model.cfg.eps, not is_rms_model(model)) if batch is None
                      else v[batch]).detach()
    return out


def feature_vector(model, n: torch.Tensor, path: Sequence[str | Node], refs: Mapping[str, torch.Tensor],
                   ln: str = "approx", mlp: str = "point", refs_neg: Mapping[str, torch.Tensor] | None = None,
                   ln_final: str = "token", approx_norm: str = "scale",
                   node_refs: Mapping[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict]:
    """Feature vector of an observable along a path (`get_normal_for_path`). Returns (y [d_model], info).

    refs:      LN inputs keyed by hook name (see refs_from_cache); refs_neg the same for the negative prompt
               (needed for mlp="boundary" and ln_final="boundary").
    node_refs: per-node overrides of the LN input (e.g. a head's source token), keyed by str(node).
    ln_final:  "token" (pullback with `ln` at refs' final residual) or "boundary" (tangent at the decision
               boundary between refs and refs_neg).
    """
    check_norm(model)
    nodes = [parse_node(model, p) for p in path]
    for a, b in zip(nodes, nodes[1:]):
        if not _feeds(model, a, b):
            raise ConfigError(f"path node {a} cannot feed {b}", hint="order nodes by layer, earliest first")
    has_ln = model.cfg.normalization_type is not None
    info: dict = {"path": [str(x) for x in nodes], "ln": ln, "mlp": mlp, "ln_final": ln_final}
    fh = final_hook(model)
    y = pullback_unembed(model, n)
    if has_ln and ln_final == "boundary":
        if refs_neg is None:
            raise ConfigError("ln_final='boundary' needs refs_neg", hint="pass the negative prompt's refs")
        y, binfo = ln_final_boundary(model, n, refs[fh], refs_neg[fh])
        info["ln_final_boundary"] = binfo
    elif has_ln:
        y = pullback_layernorm(model.ln_final, y, refs.get(fh), mode=ln, approx_norm=approx_norm)
    node_refs = node_refs or {}
    for node in reversed(nodes):
        hk = ln_input_hook(model, node)
        x_in = node_refs.get(str(node), refs.get(hk))
        lnm = ln_module(model, node)
        if node.kind == "attn":
            y = pullback_head_ov(model, node.layer, node.head, y)
        else:
            kw = {}
            if mlp == "point":
                kw["x_ref"] = lnm(x_in.view(1, 1, -1)).view(-1) if has_ln else x_in
            elif mlp == "boundary":
                if refs_neg is None:
                    raise ConfigError("mlp='boundary' needs refs_neg", hint="pass the negative prompt's refs")
                xn = node_refs.get(str(node) + ":neg", refs_neg.get(hk))
                kw["x_pos"] = lnm(x_in.view(1, 1, -1)).view(-1) if has_ln else x_in
                kw["x_neg"] = lnm(xn.view(1, 1, -1)).view(-1) if has_ln else xn
            y, minfo = pullback_mlp(model, node.layer, y, mode=mlp, **kw)
            info[str(node)] = minfo
        if has_ln:
            y = pullback_layernorm(lnm, y, x_in, mode=ln, approx_norm=approx_norm)
    return y.detach(), info


def _feeds(model, a: Node, b: Node) -> bool:
    """Whether node a's output is part of node b's input."""
    if a.layer < b.layer:
        return True
    return (a.layer == b.layer and a.kind == "attn" and b.kind == "mlp" and not model.cfg.parallel_attn_mlp)


def coupling(y1: torch.Tensor, y2: torch.Tensor, cov: torch.Tensor | None = None) -> float:
    """Coupling coefficient C(y1, y2) = y1·y2 / ||y1||² (`coupling_coeff`): the expected change of the score
    x·y2 per unit of x·y1 for isotropic x. With `cov` = Σ: y1ᵀΣy2 / y1ᵀΣy1, the OLS slope for x ~ N(μ, Σ)."""
    a, b = y1.double().reshape(-1), y2.double().reshape(-1)
    if cov is not None:
        cov = cov.double()
        return float(a @ cov @ b / (a @ cov @ a))
    return float(a @ b / (a @ a))


def cosine(y1: torch.Tensor, y2: torch.Tensor) -> float:
    """Cosine similarity of two feature vectors (float64)."""
    a, b = y1.double().reshape(-1), y2.double().reshape(-1)
    return float(a @ b / (a.norm() * b.norm()).clamp_min(1e-300))


def cosine_matrix(vectors: torch.Tensor) -> torch.Tensor:
    """Pairwise cosines of the rows of [k, d]. [k, k] float64"""
    v = vectors.double()
    v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    return v @ v.T
