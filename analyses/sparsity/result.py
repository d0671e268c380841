"""The activation-sparsity Result: per-suite census and PPL-p% arrays [T, L], trend fits and method comparisons."""

from __future__ import annotations

from typing import Any, ClassVar

from interp.results import Result


class SparsityResult(Result):
    """Sparsity across checkpoints (census, CETT-PPL-p%), the two trend laws, and TEAL/WINA/R-Sparse/CATS."""

    analysis: ClassVar[str] = "sparsity"
    title: ClassVar[str] = "Activation sparsity across training (Lazy Neuron, Sparsing Law, TEAL, WINA, R-Sparse)"
    captions: ClassVar[dict[str, str]] = {
        "census": "Nonzero (ReLU) and FAT-ε kept fractions of the MLP activations per layer over training: ReLU "
                  "models lose nonzeros as they learn, SiLU/GELU ones have none to lose.",
        "trends": "Activation ratio at CETT-PPL-1% against tokens seen, with both Sparsing-Law fits: the ReLU "
                  "ratio should fall towards its limit (Eq. 4), the SiLU ratio rise towards its (Eq. 5).",
        "methods": "Held-out loss increase against input sparsity for each training-free method: lower is better; "
                   "the gap between methods grows with sparsity.",
        "winners": "Per layer, the method with the smallest loss increase when only that layer is sparsified.",
        "sizes": "FAT-0.01 kept fraction over training for models of different sizes: Lazy Neuron says the larger "
                 "one ends sparser.",
        "speed": "sparse_linear against cuBLAS per Llama-7B projection, and a whole batch-1 decode, at each input "
                 "sparsity, on the GPU named in the title (benchmarks/sparsity_speed.py).",
    }

    def figures(self) -> dict[str, Any]:
        from .figures import build_figures

        return build_figures(self)
