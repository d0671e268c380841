"""Options of the dark-matter analysis; every default runs on the embedded default model and the shipped SAEs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from interp.analysis import AnalysisConfig
from interp.config_checks import check_ranges
from interp.errors import ConfigError


@dataclass
class Config(AnalysisConfig):
    """What to analyse (model, layer, SAEs, tokens) and how (split, intercept, R² convention, sizes of sub-studies)."""

    model: str = "toy-pythia-4l"
    """Model: an embedded suite name, a local Hugging Face folder or a transformer-lens name."""
    layer: int = -1
    """Residual layer of the SAE sweep; -1 = the middle one (n_layers // 2)."""
    saes: str = ""
    """Folder with an index.json of sae-lens SAEs ("" = data/saes/<model>, the shipped ones)."""
    cache: str = ""
    """An interp activation cache holding the hooks (else they are captured here from `data`)."""
    n_tokens: int = 32_768
    """Tokens read from the source, before the position selection."""
    ctx: int = 128
    """Tokens per sequence."""
    positions: str = "range:4:127"
    """Positions kept: the paper drops early positions and the last one (200..1022 of 1024)."""
    fit_intercept: bool = True
    """Regressions include a bias term (the paper's text)."""
    train_frac: float = 0.6
    """Fraction of tokens the regressions are fitted on (150k of 246.9k in the paper); the rest tests them."""
    ridge: float = 0.0
    """Ridge penalty of the linear regressions (0 = ordinary least squares)."""
    r2_convention: Literal["mean_over_dims", "flat", "pooled"] = "mean_over_dims"
    """How R² of a vector target is averaged: mean_over_dims, pooled or flat (see interp.stats.metrics)."""
    reference_sae: str = ""
    """SAE for the single-SAE studies ("" = the TopK SAE at 16×, else the widest)."""
    pursuit_tokens: int = 1024
    """Test tokens re-encoded by gradient pursuit, per SAE (0 = skip the study)."""
    synthetic_tokens: int = 8192
    """Rows of the introduced-error model (0 = skip the study)."""
    synthetic_sigmas: list[float] = field(default_factory=lambda: [0.0, 1.0, 2.0, 3.0, 4.0])
    """Noise levels of the introduced-error model, in units of the activations' standard deviation."""
    synthetic_ablate: float = 0.5
    """Fraction of the rarest features the introduced-error model ablates."""
    downstream_blocks: int = 64
    """Sequences for the spliced-loss study (0 = skip)."""
    trace_tokens: int = 100
    """Length of the per-token error-norm trace figure."""
    batch_size: int = 32
    """Sequences per forward pass."""

    def check(self) -> None:
        """Values that cannot run are refused."""
        check_ranges(self, at_least={"ctx": 2, "batch_size": 1, "n_tokens": 1, "trace_tokens": 0, "layer": -1,
                                     "synthetic_sigmas": 0})
        if self.synthetic_tokens and not self.synthetic_sigmas:
            raise ConfigError("synthetic_sigmas is empty while synthetic_tokens > 0",
                              hint="give noise levels (e.g. 0.0,0.1,0.2) or synthetic_tokens=0 to skip the study")
        if not 0 < self.train_frac < 1:
            raise ConfigError(f"train_frac must be in (0, 1), got {self.train_frac}", hint="e.g. 0.6")
        if self.n_tokens < 4 * self.ctx:
            raise ConfigError(f"n_tokens={self.n_tokens} is too few", hint=f"use at least {4 * self.ctx}")
        if self.ridge < 0 or self.pursuit_tokens < 0 or self.synthetic_tokens < 0 or self.downstream_blocks < 0:
            raise ConfigError("sizes and ridge must be >= 0", hint="use 0 to skip a sub-study")
        if not 0 <= self.synthetic_ablate < 1:
            raise ConfigError("synthetic_ablate must be in [0, 1)", hint="the paper uses 0.5")
