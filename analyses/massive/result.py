"""The massive-activations Result: numbers in result.json, trajectories and fitted curves in arrays."""

from __future__ import annotations

from typing import Any, ClassVar

from interp.results import Result


class MassiveResult(Result):
    """Per-layer top-1/median trajectories over checkpoints, fitted curves, detections and interventions."""

    analysis: ClassVar[str] = "massive"
    title: ClassVar[str] = "Massive activations across training checkpoints"

    def figures(self) -> dict[str, Any]:
        """Ratio heatmap (layer × checkpoint), per-layer trajectories with fits, top activations with tokens."""
        from .figures import build_figures

        return build_figures(self)
