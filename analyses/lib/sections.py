"""LIB sections of plain torch MLPs (spec lib.md §1): node layers are module paths (the input of that module) plus
"output"; sections are Linear layers and element-wise activations with the bias folded in (analyses.lib.cut).

transformer-lens `HookedTransformer`s (LN / LNPre / RMS / RMSPre / no norm, standard or rotary positions, sequential
or parallel attention+MLP, plain or gated MLPs, grouped-query heads, Qwen3's q/k norms; natively run Llama / Mistral /
Qwen2 / Qwen3 / Phi-3 models once converted) are cut in analyses.lib.tl_sections.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from analyses.lib.cut import LIBModel, Section, compose, split_bias
from interp.errors import ConfigError, HookNotFoundError

_ELEMENTWISE = (nn.ReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.Identity, nn.LeakyReLU, nn.ELU, nn.Softplus)


# ----------------------------------------------------------------------------------------- plain MLPs
def _leaves(module: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in module.named_modules() if len(list(m.children())) == 0 and n]


def _folded_leaf(m: nn.Module) -> Section:
    if isinstance(m, nn.Linear):
        W = m.weight.detach().to(torch.float64).T
        b = None if m.bias is None else m.bias.detach().to(torch.float64)

        def lin(xa: Tensor) -> Tensor:
            x, c = split_bias(xa)
            y = x @ W
            return torch.cat([y if b is None else y + c * b, c], -1)
        return lin
    if isinstance(m, _ELEMENTWISE):
        def act(xa: Tensor) -> Tensor:
            x, c = split_bias(xa)
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
    sections = [compose(steps[a:b]) for a, b in zip(idx[:-1], idx[1:])]
    if node_layers[-1] == "output":
        sections[-1] = drop_c(sections[-1])
    pre = compose(steps[: idx[0]])

    def first(x: Tensor) -> Tensor:
        x = x.to(torch.float64).flatten(1)
        return pre(torch.cat([x, torch.ones_like(x[..., :1])], -1))
    return LIBModel(list(node_layers), sections, first, [False] * len(node_layers))

