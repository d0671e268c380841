"""The dark-matter Result: per-SAE numbers and the studies in result.json, figure arrays in arrays.safetensors."""

from __future__ import annotations

from typing import Any, ClassVar

from interp.results import Result


class DarkMatterResult(Result):
    """Linear vs nonlinear SAE error across widths, norm prediction, per-token R², pursuit, cross-component fits."""

    analysis: ClassVar[str] = "dark-matter"
    title: ClassVar[str] = "SAE dark matter: linear and nonlinear SAE error (Engels et al. 2024)"

    def figures(self) -> dict[str, Any]:
        """Scaling with width + power laws, norm-prediction bars, per-token R² matrix, token trace, and more."""
        from .figures import build_figures

        return build_figures(self)
