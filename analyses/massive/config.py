"""Configuration of the massive-activations analysis (every default runs on the embedded default suite)."""

from __future__ import annotations

from dataclasses import dataclass, field

from interp.config_checks import check_device, check_ranges, check_types
from interp.errors import ConfigError


@dataclass
class Config:
    """Options of `analyses.massive.run` (simple types only; CLI: --set key=value)."""

    model: str = "toy-pythia-4l"  # embedded suite, or a Pythia name (needs a hub) with training checkpoints
    steps: list[int] = field(default_factory=list)  # checkpoints to sweep; empty = all
    source: str = "embedded"  # token source for interp.sources.token_blocks
    n_inputs: int = 10  # sequences (the paper averages over 10)
    ctx: int = 128  # tokens per sequence
    hook: str = "resid_post"  # blocks.{l}.hook_<hook>: the decoder layer's output
    top_k: int = 3
    aggregate: str = "ratio_of_means"  # series the curves are fitted to: ratio_of_means | mean_of_ratios
    cache_dir: str = ""  # per-checkpoint JSON cache folder ("" = no cache); reruns resume from it
    fit: bool = True  # fit Eq. 14 per layer (needs ≥ 6 checkpoints)
    compare_alternatives: bool = True  # first/second-order step responses, the paper's single start
    detect_mode: str = "relative"  # sun | relative | either
    abs_thresh: float = 100.0
    ratio_thresh: float = 1000.0
    rel_ratio: float = 20.0
    mad_thresh: float = 20.0
    persistence: float = 0.25
    intervene: bool = True  # zero/mean intervention at the final checkpoint
    intervene_positions: str = "massive"  # massive | all
    predictor_suites: list[str] = field(default_factory=list)  # more suites feeding the predictor; ["auto"] = all
    predictor_table: str = ""  # user .json/.csv of fitted parameters (rows with layer, n_layers, d_model, ...)
    seed: int = 0
    device: str = "cpu"

    def validate(self) -> Config:
        """Raise ConfigError on sizes the sweep cannot run with (they used to be clamped to one block silently)."""
        check_types(self)
        check_ranges(self, at_least={"steps": 0}, fractions={"persistence": (0.0, 1.0)})
        check_device(self.device)
        for k, least in (("n_inputs", 1), ("ctx", 2), ("top_k", 1)):
            if getattr(self, k) < least:
                raise ConfigError(f"{k} must be >= {least}, got {getattr(self, k)}",
                                  hint=f"set {k} to an integer >= {least} (default {getattr(Config, k)})")
        if self.aggregate not in ("ratio_of_means", "mean_of_ratios"):
            raise ConfigError(f"unknown aggregate {self.aggregate!r}", hint="use ratio_of_means or mean_of_ratios")
        return self
