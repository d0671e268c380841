"""The hash-codes Result: sweep arrays [width, (epoch | size,) seed], phase charts and the LM's codes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from interp.results import Result


@dataclass
class HashCodesResult(Result):
    """Sweeps of redundancy ratio and categorisation on digits MLPs, phase charts, and the LM's MLP codes."""

    analysis: ClassVar[str] = "hashcodes"
    title: ClassVar[str] = "Activation-pattern hash codes (determinism and categorisation)"
    captions: ClassVar[dict[str, str]] = {
        "redundancy_vs_width": "Redundancy ratio (share of samples that share their code with another) against "
                               "width: it "
                    "falls to zero as the network becomes sufficiently expressive.",
        "categorization_vs_width": "K-means, 9-NN and logistic regression on the codes against width: the codes "
                                "categorise as well as the network once they are unique.",
    }

    def figures(self) -> dict[str, Any]:
        """Redundancy/categorisation vs width, epochs and samples; the phase charts; LM layer profile."""
        from analyses.hashcodes.figures import build_figures

        return build_figures(self.arrays, self.details)
