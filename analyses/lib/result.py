"""The LIB result: numbers in summary/details, edges, Λ and Fourier spectra in arrays; figures rebuilt from them."""

from __future__ import annotations

from typing import Any, ClassVar

from interp.results import Result


class LIBResult(Result):
    """Local Interaction Basis graph, LIB vs PCA ablations and Fourier labels."""

    analysis: ClassVar[str] = "lib"
    title: ClassVar[str] = "Local Interaction Basis (Bushnaq et al. 2024)"
    captions: ClassVar[dict[str, str]] = {
        "node_ablation": "Accuracy as LIB and PCA directions are ablated, smallest first: where each curve drops "
                         "is how many directions the layer needs.",
        "edge_ablation": "Accuracy against the number of edges kept: the curve that reaches full accuracy with "
                         "fewer edges gives the sparser graph.",
        "interaction_graph": "The LIB interaction graph, strongest edges only: a few directions per layer carry "
                             "the computation.",
        "fourier_spectra": "Fourier power of the leading directions: a single bright cell per row means the "
                           "direction computes one frequency.",
    }

    def figures(self) -> dict[str, Any]:
        """Node- and edge-ablation curves, the interaction graph, Fourier spectra."""
        from analyses.lib.figures import (
            edge_ablation_figure,
            fourier_figure,
            interaction_graph_figure,
            node_ablation_figure,
        )

        figs = {}
        if "node_ablation" in self.details:
            figs["node_ablation"] = node_ablation_figure(self)
        if "edge_ablation" in self.details:
            figs["edge_ablation"] = edge_ablation_figure(self)
        if any(k.startswith("edges_lib_") for k in self.arrays):
            figs["interaction_graph"] = interaction_graph_figure(self)
        if "fourier" in self.details:
            figs["fourier_spectra"] = fourier_figure(self)
        return figs
