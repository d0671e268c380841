"""A model cut at node layers (spec lib.md §1): the sections between them, and the folded-bias convention.

Every activation carries the folded bias as its last coordinate c (=1 on data): each bias b of the network enters
as c·b and c passes through, so f(αx, αc) is exactly rib's folded-bias section at integration point α. Sections
are pure float64 tensor functions (`torch.func` differentiates them). `analyses.lib.sections` cuts plain torch MLPs,
`analyses.lib.tl_sections` transformer-lens models; both build on what is here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

Section = Callable[[Tensor], Tensor]


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


def split_bias(x: Tensor) -> tuple[Tensor, Tensor]:
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


def compose(fns: list[Section]) -> Section:
    return _Composed(fns)
