"""Configuration of the massive-activations analysis (every default runs on the embedded default suite)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from interp.analysis import AnalysisConfig
from interp.config_checks import check_ranges
from interp.errors import ConfigError


@dataclass
class Config(AnalysisConfig):
    """Options of `analyses.massive.run`: which checkpoints, which inputs, how to detect, fit and intervene."""

    model: str = "toy-pythia-4l"
    """Embedded suite (or a Pythia name, which needs a hub) whose training checkpoints are swept."""
    checkpoints: list[int] = field(default_factory=list)
    """Training steps to sweep; empty = every checkpoint of the suite."""
    n_inputs: int = 10
    """Held-out sequences the statistics average over (the paper uses 10)."""
    ctx: int = 128
    """Tokens per sequence."""
    hook: str = "resid_post"
    """Which residual stream to read: blocks.{l}.hook_<hook> (resid_post = the decoder layer's output)."""
    top_k: int = 3
    """Largest activations (by magnitude) kept per sequence and layer."""
    aggregate: Literal["ratio_of_means", "mean_of_ratios"] = "ratio_of_means"
    """Series the curves are fitted to: mean top-1 over mean median, or the mean of per-sequence ratios."""
    cache_dir: str = ""
    """Folder of per-checkpoint JSON results; reruns resume from it ("" = no cache)."""
    fit: bool = True
    """Fit the five-parameter curve (Eq. 14) per layer; needs at least 6 checkpoints."""
    compare_alternatives: bool = True
    """Also fit first/second-order step responses and the paper's single-start fit."""
    detect_mode: Literal["sun", "relative", "either"] = "relative"
    """Detection rule: Sun et al.'s absolute criteria, the scale-free relative rule, or either."""
    abs_thresh: float = 100.0
    """Sun et al.'s absolute magnitude threshold (|activation| > 100)."""
    ratio_thresh: float = 1000.0
    """Sun et al.'s ratio threshold (|activation| > 1000 × the layer's median magnitude)."""
    rel_ratio: float = 20.0
    """Relative rule: |activation| over the layer's median magnitude at least this."""
    mad_thresh: float = 20.0
    """Relative rule: robust z-score (median absolute deviation units) at least this."""
    persistence: float = 0.25
    """Fraction of sequences in which a dimension must be massive to be reported."""
    intervene: bool = True
    """Zero/mean-ablate the massive dimensions at the final checkpoint and measure the loss change."""
    intervene_positions: Literal["massive", "all"] = "massive"
    """Ablate only at the positions where the activation is massive, or at every position."""
    predictor_suites: list[str] = field(default_factory=list)
    """More suites feeding the architecture → curve-parameter predictor; ["auto"] = every embedded suite."""
    predictor_table: str = ""
    """A .json/.csv of fitted parameters from elsewhere (rows with layer, n_layers, d_model, ...)."""

    def check(self) -> None:
        """Sizes the sweep cannot run with are refused (they used to be clamped to one block silently)."""
        check_ranges(self, at_least={"checkpoints": 0, "n_inputs": 1, "ctx": 2, "top_k": 1},
                     fractions={"persistence": (0.0, 1.0)})
        if self.step != -1:
            raise ConfigError(f"step={self.step}: massive sweeps many checkpoints, not one",
                              hint=f"pass checkpoints=[{self.step}] (or a list of steps) instead of step")
