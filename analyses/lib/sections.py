"""Node layers and sections with the bias folded in (spec lib.md §1).

A node layer is a hook point; section l maps node layer l to node layer l+1. Every activation carries the folded
bias as its last coordinate c (=1 on data): each bias b of the network enters as c·b and c passes through, so
f(αx, αc) is exactly rib's folded-bias section at integration point α. The final node layer "output" (logits)
has no bias coordinate. Sections are pure tensor functions (float64), so `torch.func` can differentiate them and
they never re-enter hooks.

Supported: transformer-lens `HookedTransformer`s (analyses.lib.tl_sections: LN / LNPre / RMS / RMSPre / no norm,
standard or rotary positions, sequential or parallel attention+MLP, plain or gated MLPs, grouped-query heads, Qwen3's
q/k norms; natively run Llama / Mistral / Qwen2 / Qwen3 / Phi-3 models once converted to transformer-lens) and plain
torch MLPs (Linear layers and element-wise activations, node layers named by module path = the input of that module).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

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
def transformer_lib_model(model: nn.Module, node_layers: list[str], last_pos_only: bool = False) -> LIBModel:
    """Cut a HookedTransformer at node layers (TL hook names or rib names); see analyses.lib.tl_sections."""
    from analyses.lib.tl_sections import transformer_lib_model as build

    return build(model, node_layers, last_pos_only)


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

