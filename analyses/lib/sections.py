"""Node layers and sections with the bias folded in (spec lib.md §1).

A node layer is a hook point; section l maps node layer l to node layer l+1. Every activation carries the folded
bias as its last coordinate c (=1 on data): each bias b of the network enters as c·b and c passes through, so
f(αx, αc) is exactly rib's folded-bias section at integration point α. The final node layer "output" (logits)
has no bias coordinate. Sections are pure tensor functions (float64), so `torch.func` can differentiate them and
they never re-enter hooks.

Supported: transformer-lens `HookedTransformer`s (LN / LNPre / RMS / no norm, standard or rotary positions,
sequential or parallel attention+MLP, non-gated MLPs) and plain torch MLPs (Linear layers and element-wise
activations, node layers named by module path = the input of that module).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from analyses.lib import structured
from interp.errors import ConfigError, HookNotFoundError

Section = Callable[[Tensor], Tensor]
_ELEMENTWISE = (nn.ReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.Identity, nn.LeakyReLU, nn.ELU, nn.Softplus)


@dataclass
class LIBModel:
    """A model cut at node layers: `first(inputs)` gives node-0 activations, `sections[l]` maps node l to l+1."""

    node_layers: list[str]
    sections: list[Section]
    first: Callable[[Tensor], Tensor]
    has_pos: list[bool] = field(default_factory=list)

    def forward_from(self, l: int, acts: Tensor, stop: int | None = None) -> Tensor:
        """Run sections l .. stop-1 (default: to the output) from node-l activations."""
        for sec in self.sections[l: len(self.sections) if stop is None else stop]:
            acts = sec(acts)
        return acts

    def all_acts(self, inputs: Tensor) -> list[Tensor]:
        """Activations at every node layer (bias folded), in float64."""
        acts = [self.first(inputs)]
        for sec in self.sections:
            acts.append(sec(acts[-1]))
        return acts


def _split(x: Tensor) -> tuple[Tensor, Tensor]:
    return x[..., :-1], x[..., -1:]


class _Composed:
    """A chain of steps; `jac_steps` holds closed-form step Jacobians when every step has one (else None)."""

    def __init__(self, fns: list[Section]):
        self.fns = fns
        jacs = [getattr(f, "jac", None) for f in fns]
        self.jac_steps = jacs if fns and all(j is not None for j in jacs) else None
        # the Hadamard form of M' needs a single MLP step; trailing identities (no final norm) do not change J
        only_first = self.jac_steps and all(getattr(j, "is_identity", False) for j in self.jac_steps[1:])
        self.m_dash = getattr(jacs[0], "m_dash", None) if only_first else None
        self.edge_w = getattr(jacs[0], "edge_w", None) if only_first else None

    def __call__(self, x: Tensor) -> Tensor:
        for f in self.fns:
            x = f(x)
        return x


def _compose(fns: list[Section]) -> Section:
    return _Composed(fns)


# ----------------------------------------------------------------------------------------- transformer-lens
class _TLFolded:
    """Folded-bias re-implementation of a HookedTransformer's forward, step by step, from its weights."""

    def __init__(self, model: nn.Module):
        cfg = model.cfg
        self.model, self.cfg = model, cfg
        if getattr(cfg, "gated_mlp", False) or getattr(cfg, "act_fn", "") in ("solu_ln",):
            raise ConfigError("LIB sections do not support gated or SoLU-LN MLPs", hint="use a GPT-2/NeoX-style model")
        if cfg.positional_embedding_type not in ("standard", "rotary"):
            raise ConfigError(f"positional embedding '{cfg.positional_embedding_type}' is not supported",
                              hint="LIB supports standard and rotary positions")
        if getattr(cfg, "attention_dir", "causal") != "causal":
            raise ConfigError("LIB sections support causal attention only", hint="use a decoder model")
        self.W = {k: v.detach().to(torch.float64) for k, v in model.state_dict().items()
                  if v.is_floating_point()}
        self.L = cfg.n_layers
        self.parallel = bool(getattr(cfg, "parallel_attn_mlp", False))
        self.plain = cfg.normalization_type is None and cfg.positional_embedding_type == "standard"

    def _norm(self, x: Tensor, c: Tensor, prefix: str) -> Tensor:
        kind = self.cfg.normalization_type
        if kind is None:
            return x
        eps = self.cfg.eps
        if kind in ("LN", "LNPre"):
            x = x - x.mean(-1, keepdim=True)
        x = x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()
        if kind == "LN":
            return x * self.W[prefix + ".w"] + c * self.W[prefix + ".b"]
        if kind == "RMS":
            return x * self.W[prefix + ".w"]
        return x

    def _attn(self, h: Tensor, c: Tensor, i: int, last: bool) -> Tensor:
        """Attention output [B, Q, d] (Q = 1 if last) from normed input h [B, P, d] and bias coordinate c."""
        W, a = self.W, f"blocks.{i}.attn."
        P = h.shape[1]
        hq, cq = (h[:, -1:], c[:, -1:]) if last else (h, c)
        q = torch.einsum("bpd,hde->bphe", hq, W[a + "W_Q"]) + cq[..., None] * W[a + "b_Q"]
        k = torch.einsum("bpd,hde->bphe", h, W[a + "W_K"]) + c[..., None] * W[a + "b_K"]
        v = torch.einsum("bpd,hde->bphe", h, W[a + "W_V"]) + c[..., None] * W[a + "b_V"]
        if self.cfg.positional_embedding_type == "rotary":
            attn = self.model.blocks[i].attn
            q = attn.apply_rotary(q, P - 1 if last else 0).to(torch.float64)
            k = attn.apply_rotary(k, 0).to(torch.float64)
        scale = self.cfg.attn_scale if getattr(self.cfg, "use_attn_scale", True) else 1.0
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / scale
        qpos = torch.arange(P - q.shape[1], P)
        mask = qpos[:, None] >= torch.arange(P)[None, :]
        scores = scores.masked_fill(~mask, float("-inf"))
        z = torch.einsum("bhqk,bkhe->bqhe", scores.softmax(-1), v)
        return torch.einsum("bqhe,hed->bqd", z, W[a + "W_O"]) + cq * W[a + "b_O"]

    def _mlp(self, h: Tensor, c: Tensor, i: int) -> Tensor:
        W, m = self.W, f"blocks.{i}.mlp."
        act = self.model.blocks[i].mlp.act_fn
        pre = h @ W[m + "W_in"] + c * W[m + "b_in"]
        return act(pre) @ W[m + "W_out"] + c * W[m + "b_out"]

    def attn_step(self, i: int, last: bool) -> Section:
        def f(xa: Tensor) -> Tensor:
            x, c = _split(xa)
            out = self._attn(self._norm(x, c, f"blocks.{i}.ln1"), c, i, last)
            if last:
                return torch.cat([x[:, -1] + out[:, 0], c[:, -1]], -1)
            return torch.cat([x + out, c], -1)
        if self.plain and last:
            scale = self.cfg.attn_scale if getattr(self.cfg, "use_attn_scale", True) else 1.0
            f.jac = structured.last_query_attn_jac(self.W, f"blocks.{i}.attn.", scale)
        return f

    def mlp_step(self, i: int) -> Section:
        def f(xa: Tensor) -> Tensor:
            x, c = _split(xa)
            return torch.cat([x + self._mlp(self._norm(x, c, f"blocks.{i}.ln2"), c, i), c], -1)
        if self.plain:
            m = f"blocks.{i}.mlp."
            f.jac = structured.mlp_jac(self.W[m + "W_in"], self.W[m + "b_in"], self.W[m + "W_out"],
                                       self.W[m + "b_out"], self.model.blocks[i].mlp.act_fn)
        return f

    def block_step(self, i: int, last: bool) -> Section:
        """Parallel attention + MLP: x + attn(ln1 x) + mlp(ln2 x)."""
        def f(xa: Tensor) -> Tensor:
            x, c = _split(xa)
            a = self._attn(self._norm(x, c, f"blocks.{i}.ln1"), c, i, last)
            if last:
                x, c, a = x[:, -1], c[:, -1], a[:, 0]
            return torch.cat([x + a + self._mlp(self._norm(x, c, f"blocks.{i}.ln2"), c, i), c], -1)
        return f

    def ln_final_step(self) -> Section:
        def f(xa: Tensor) -> Tensor:
            x, c = _split(xa)
            return torch.cat([self._norm(x, c, "ln_final"), c], -1)
        if self.cfg.normalization_type is None:
            f.jac = structured.identity_jac()
        return f

    def unembed_step(self) -> Section:
        def f(xa: Tensor) -> Tensor:
            x, c = _split(xa)
            return x @ self.W["unembed.W_U"] + c * self.W["unembed.b_U"]
        f.jac = structured.unembed_jac(self.W["unembed.W_U"], self.W["unembed.b_U"])
        return f

    def embed(self, tokens: Tensor) -> Tensor:
        x = self.W["embed.W_E"][tokens]
        if self.cfg.positional_embedding_type == "standard":
            x = x + self.W["pos_embed.W_pos"][: tokens.shape[1]]
        return torch.cat([x, torch.ones_like(x[..., :1])], -1)


def _tl_points(L: int, parallel: bool) -> list[str]:
    pts = []
    for i in range(L):
        pts.append(f"blocks.{i}.hook_resid_pre")
        if not parallel:
            pts.append(f"blocks.{i}.hook_resid_mid")
    return pts + [f"blocks.{L - 1}.hook_resid_post", "unembed", "output"]


def canonical_tl_name(name: str, L: int) -> str:
    """rib names (ln1.i, ln2.i, ln_final, unembed, output) and resid_post.i -> the canonical TL hook name."""
    parts = name.split(".")
    if len(parts) == 2 and parts[0] in ("ln1", "ln2") and parts[1].isdigit():
        return f"blocks.{parts[1]}.hook_resid_{'pre' if parts[0] == 'ln1' else 'mid'}"
    if name == "ln_final":
        return f"blocks.{L - 1}.hook_resid_post"
    if len(parts) == 3 and parts[0] == "blocks" and parts[2] == "hook_resid_post" and int(parts[1]) < L - 1:
        return f"blocks.{int(parts[1]) + 1}.hook_resid_pre"
    return name


def transformer_lib_model(model: nn.Module, node_layers: list[str], last_pos_only: bool = False) -> LIBModel:
    """Cut a HookedTransformer at node layers (TL hook names or rib names); inputs are token ids [B, P]."""
    tf = _TLFolded(model)
    L = tf.L
    pts = _tl_points(L, tf.parallel)
    steps: list[Section] = []
    for i in range(L):
        last = last_pos_only and i == L - 1
        if tf.parallel:
            steps.append(tf.block_step(i, last))
        else:
            steps += [tf.attn_step(i, last), tf.mlp_step(i)]
    steps += [tf.ln_final_step(), tf.unembed_step()]
    idx = []
    for n in node_layers:
        cn = canonical_tl_name(n, L)
        if cn not in pts:
            raise HookNotFoundError(f"'{n}' is not a LIB node layer of this model",
                                    hint=f"use residual-stream hooks in order: {', '.join(pts)}")
        idx.append(pts.index(cn))
    if idx != sorted(set(idx)):
        raise ConfigError("node layers must be distinct and in forward order", hint=f"order: {', '.join(pts)}")
    after_last_attn = len(pts) - (3 if tf.parallel else 4)  # first point computed by the last attention step
    has_pos = [not (last_pos_only and j >= after_last_attn) for j in idx]
    sections = [_compose(steps[a:b]) for a, b in zip(idx[:-1], idx[1:])]
    pre = _compose(steps[: idx[0]])
    return LIBModel(list(node_layers), sections, lambda tokens: pre(tf.embed(tokens)), has_pos)


# ----------------------------------------------------------------------------------------- plain MLPs
def _leaves(module: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in module.named_modules() if len(list(m.children())) == 0 and n]


def _folded_leaf(m: nn.Module) -> Section:
    if isinstance(m, nn.Linear):
        W = m.weight.detach().to(torch.float64).T
        b = None if m.bias is None else m.bias.detach().to(torch.float64)

        def lin(xa: Tensor) -> Tensor:
            x, c = _split(xa)
            y = x @ W
            return torch.cat([y if b is None else y + c * b, c], -1)
        return lin
    if isinstance(m, _ELEMENTWISE):
        def act(xa: Tensor) -> Tensor:
            x, c = _split(xa)
            return torch.cat([m(x), c], -1)
        return act
    raise ConfigError(f"module {type(m).__name__} is not supported in an LIB MLP",
                      hint="LIB MLP sections take nn.Linear layers and element-wise activations")


def mlp_lib_model(module: nn.Module, node_layers: list[str]) -> LIBModel:
    """Cut a sequential MLP at node layers = module paths (the input of that module) plus 'output'."""
    leaves = _leaves(module)
    names = [n for n, _ in leaves]
    steps = [_folded_leaf(m) for _, m in leaves]
    idx = []
    for n in node_layers:
        if n == "output":
            idx.append(len(leaves))
        elif n in names:
            idx.append(names.index(n))
        else:
            raise HookNotFoundError(f"'{n}' is not a leaf module of this MLP",
                                    hint=f"use module paths in order: {', '.join(names)}, output")
    if idx != sorted(set(idx)):
        raise ConfigError("node layers must be distinct and in forward order", hint=f"order: {', '.join(names)}")

    def drop_c(f: Section) -> Section:
        return lambda xa: f(xa)[..., :-1]
    sections = [_compose(steps[a:b]) for a, b in zip(idx[:-1], idx[1:])]
    if node_layers[-1] == "output":
        sections[-1] = drop_c(sections[-1])
    pre = _compose(steps[: idx[0]])

    def first(x: Tensor) -> Tensor:
        x = x.to(torch.float64).flatten(1)
        return pre(torch.cat([x, torch.ones_like(x[..., :1])], -1))
    return LIBModel(list(node_layers), sections, first, [False] * len(node_layers))

