"""Options of the dark-matter analysis; every default runs on the embedded default model and the shipped SAEs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from interp.config_checks import check_device, check_ranges, check_types
from interp.errors import ConfigError
from interp.stats.metrics import CONVENTIONS


@dataclass
class Config:
    """What to analyse (model, layer, SAEs, tokens) and how (split, intercept, R² convention, sizes of sub-studies)."""

    model: str = "toy-pythia-4l"       # embedded name, local HF folder or TL name
    checkpoint: int | None = None      # training step; None = final
    layer: int = -1                    # residual layer of the SAE sweep; -1 = middle (n_layers // 2)
    saes: str = ""                     # folder with index.json of sae-lens SAEs; "" = data/saes/<model>
    cache: str = ""                    # optional interp cache holding the four hooks (else captured here)
    data: str = "embedded"             # token source when no cache is given
    n_tokens: int = 32_768             # tokens read from the source (before the position selection)
    ctx: int = 128
    positions: str = "range:4:127"     # the paper drops early positions and the last one (200..1022 of 1024)
    fit_intercept: bool = True         # the paper's text: regressions include a bias term
    train_frac: float = 0.6            # 150k of 246.9k tokens in the paper
    ridge: float = 0.0
    r2_convention: str = "mean_over_dims"
    seed: int = 0
    reference_sae: str = ""            # SAE for the single-SAE studies; "" = the TopK SAE at 16× (else the widest)
    pursuit_tokens: int = 1024         # test tokens re-encoded by gradient pursuit (per SAE)
    synthetic_tokens: int = 8192       # rows for the introduced-error model
    synthetic_sigmas: list[float] = field(default_factory=lambda: [0.0, 1.0, 2.0, 3.0, 4.0])
    synthetic_ablate: float = 0.5
    downstream_blocks: int = 64        # sequences for the spliced-loss study (0 = skip)
    trace_tokens: int = 100            # length of the token trace figure
    batch_size: int = 32               # sequences per forward pass
    device: str = "cpu"

    def validate(self) -> Config:
        """Raise ConfigError for values that cannot run."""
        check_types(self)
        check_ranges(self, at_least={"ctx": 2, "batch_size": 1, "n_tokens": 1, "trace_tokens": 0, "layer": -1,
                                     "synthetic_sigmas": 0})
        check_device(self.device)
        if self.synthetic_tokens and not self.synthetic_sigmas:
            raise ConfigError("synthetic_sigmas is empty while synthetic_tokens > 0",
                              hint="give noise levels (e.g. 0.0,0.1,0.2) or synthetic_tokens=0 to skip the study")
        if self.r2_convention not in CONVENTIONS:
            raise ConfigError(f"unknown r2_convention '{self.r2_convention}'", hint=f"use one of {CONVENTIONS}")
        if not 0 < self.train_frac < 1:
            raise ConfigError(f"train_frac must be in (0, 1), got {self.train_frac}", hint="e.g. 0.6")
        if self.n_tokens < 4 * self.ctx:
            raise ConfigError(f"n_tokens={self.n_tokens} is too few", hint=f"use at least {4 * self.ctx}")
        if self.ridge < 0 or self.pursuit_tokens < 0 or self.synthetic_tokens < 0 or self.downstream_blocks < 0:
            raise ConfigError("sizes and ridge must be >= 0", hint="use 0 to skip a sub-study")
        if not 0 <= self.synthetic_ablate < 1:
            raise ConfigError("synthetic_ablate must be in [0, 1)", hint="the paper uses 0.5")
        return self

    def to_dict(self) -> dict:
        """JSON-able copy."""
        return asdict(self)
