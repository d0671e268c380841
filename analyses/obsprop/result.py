"""The obsprop Result: feature-vector norms and cosines per head, paths, coupling vs slope, baselines."""

from __future__ import annotations

from typing import Any, ClassVar

from interp.results import Result


class ObsPropResult(Result):
    """Observable-propagation result: feature-vector norms/cosines per head, paths, coupling vs slope, baselines."""

    analysis: ClassVar[str] = "obsprop"
    title: ClassVar[str] = "Observable propagation (Dunefsky & Cohan 2024)"

    def figures(self) -> dict[str, Any]:
        from .figures import build_figures

        return build_figures(self.summary, self.details, self.arrays)
