"""The SAE-evals Result: one row per SAE in details["saes"], densities and their histograms in arrays."""

from __future__ import annotations

from typing import Any, ClassVar

from interp.results import Result


class SAEEvalsResult(Result):
    """FVU, L0, dead/dense latents, density histograms and CE/KL loss recovered of a model's SAEs and transcoders."""

    analysis: ClassVar[str] = "sae-evals"
    title: ClassVar[str] = "SAE evals: reconstruction, sparsity, latent census and loss recovered"
    captions: ClassVar[dict[str, str]] = {
        "tradeoff": "Each SAE's L0 against its explained variance: up and to the left is better. Transcoders "
                    "(diamonds) are scored on the output hook they predict.",
        "loss_recovered": "CE loss recovered when the SAE replaces the activations (a transcoder: its output hook), "
                          "against zero and mean ablation of that hook: 1 means the model does not notice the "
                          "splice.",
        "density": "How often each latent fires (log10 of the fraction of tokens): a mass at the left edge is "
                   "nearly dead latents, one at the right dense ones.",
    }

    def figures(self) -> dict[str, Any]:
        from .figures import build_figures

        return build_figures(self)
