"""The massive-activations Result: numbers in result.json, trajectories and fitted curves in arrays."""

from __future__ import annotations

from typing import Any, ClassVar

from interp.results import Result


class MassiveResult(Result):
    """Per-layer top-1/median trajectories over checkpoints, fitted curves, detections and interventions."""

    analysis: ClassVar[str] = "massive"
    title: ClassVar[str] = "Massive activations across training checkpoints"
    captions: ClassVar[dict[str, str]] = {
        "ratio_heatmap": "Top-1/median ratio per layer (rows) and checkpoint (columns): look for the layers where it "
                         "climbs, and when.",
        "trajectories": "Each layer's ratio over training with the fitted Eq. 14 curve: an early peak then decay, "
                        "or a steady log-increase.",
        "top_activations": "The largest activation per layer and input at the final checkpoint, with its token and "
                           "dimension: massive ones sit on few dimensions and special tokens.",
        "interventions": "Loss after zeroing or mean-setting the massive dimensions, against random-dimension "
                         "controls: zeroing should hurt far more.",
    }

    def figures(self) -> dict[str, Any]:
        """Ratio heatmap (layer × checkpoint), per-layer trajectories with fits, top activations with tokens."""
        from .figures import build_figures

        return build_figures(self)
