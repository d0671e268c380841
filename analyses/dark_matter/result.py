"""The dark-matter Result: per-SAE numbers and the studies in result.json, figure arrays in arrays.safetensors."""

from __future__ import annotations

from typing import Any, ClassVar

from interp.results import Result


class DarkMatterResult(Result):
    """Linear vs nonlinear SAE error across widths, norm prediction, per-token R², pursuit, cross-component fits."""

    analysis: ClassVar[str] = "dark-matter"
    title: ClassVar[str] = "SAE dark matter: linear and nonlinear SAE error (Engels et al. 2024)"
    captions: ClassVar[dict[str, str]] = {
        "scaling": "FVU of each SAE against its width, alone and with the linear prediction of its error added: the "
                   "gap between the two is the linearly predictable dark matter.",
        "norm_prediction": "Test R² of predicting the error norm from the activation, per target: the paper finds "
                           "the norm over 90 % predictable.",
        "token_trace": "Linear, nonlinear and total error norm token by token: look for tokens where the nonlinear "
                       "part dominates.",
        "cross_component": "How much of the error the other components' SAE outputs, activations and errors "
                           "explain (Fig. 10b): low bars mean the error is not inherited from upstream.",
        "pursuit": "Gradient pursuit at each token's own L0 against the SAE encoder: a lower nonlinear FVU means "
                   "part of the dark matter is the encoder's fault.",
    }

    def figures(self) -> dict[str, Any]:
        """Scaling with width + power laws, norm-prediction bars, per-token R² matrix, token trace, and more."""
        from .figures import build_figures

        return build_figures(self)
