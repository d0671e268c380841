"""Options of the activation-sparsity analysis; the defaults run on the shipped ReLU and SiLU suites."""

from __future__ import annotations

from dataclasses import dataclass, field

from interp.analysis import AnalysisConfig
from interp.config_checks import check_ranges
from interp.errors import ConfigError


@dataclass
class Config(AnalysisConfig):
    """Which suites and checkpoints, how many tokens, and the tolerances and sparsities to compare at."""

    model: str = "toy-pythia-silu"
    """The suite (or run folder, or one Hugging Face folder) whose final checkpoint the sparsification methods are
    compared on. Natively run decoders work (Llama, Mistral, Qwen2/3, Phi-3, Gemma 2/3); OLMo 2 is refused here (no
    normalised projection inputs) but may be swept in `suites`."""
    suites: list[str] = field(default_factory=lambda: ["toy-pythia-relu", "toy-pythia-silu"])
    """Suites (or run folders of checkpoint subfolders, step<N>/) swept checkpoint by checkpoint."""
    n_tokens: int = 4096
    """Held-out tokens the losses are measured on."""
    calib_tokens: int = 4096
    """Other held-out tokens the thresholds are calibrated on (never the evaluation tokens)."""
    cache: str = ""
    """An interp cache of the projections' input hooks to calibrate from instead (model and final step must match)."""
    ctx: int = 128
    """Tokens per sequence."""
    fat_eps: list[float] = field(default_factory=lambda: [1e-3, 1e-2, 1e-1])
    """FAT-ε thresholds of the activation census."""
    ppl_tolerances: list[float] = field(default_factory=lambda: [0.01, 0.05, 0.10])
    """p of CETT-PPL-p%: the perplexity rise allowed (fractions)."""
    last_k: int = 5
    """Checkpoints (the last ones after warm-up) that CETT-PPL-p% is searched on jointly (App. E)."""
    search_eps: float = 1e-3
    """Width of the bisection interval at which Algorithm 1 stops."""
    warmup_steps: int = -1
    """Checkpoints before this step are dropped from the trends (-1: the suite's own warm-up from suite.json)."""
    token_unit: float = 1e6
    """D in the trend laws is tokens seen / token_unit (the paper: 1e9; toy runs see millions)."""
    tokens_per_step: int = 0
    """Tokens per training step, for D = step × tokens_per_step (0: the suite's own: an embedded suite's suite.json,
    or a suite.json in a run folder with "tokens_per_step" or "train": {"batch", "ctx"}, or the token count in the
    last checkpoint's trainer_state.json; else 8 × 256 = 2048)."""
    sparsities: list[float] = field(default_factory=lambda: [0.3, 0.4, 0.5, 0.7])
    """Input sparsities at which TEAL, WINA, R-Sparse and CATS are compared."""
    rsparse_alpha: float = 0.5
    """R-Sparse's share of the budget spent on exact channels (the rest buys the low rank)."""
    per_layer: bool = True
    """Also sparsify one layer at a time, to say which method wins per layer."""
    batch_size: int = 16
    """Sequences per forward pass."""
    size_suites: list[str] = field(default_factory=lambda: ["toy-pythia-2l", "toy-pythia-4l"])
    """Suites of different sizes, smallest first, whose checkpoints get the census only (Lazy Neuron: larger models
    are sparser)."""
    speed_results: str = ""
    """A benchmarks/sparsity_speed.py JSON to show as the measured speed-ups ("" = the repository's own, if any)."""

    def check(self) -> None:
        check_ranges(self, at_least={"n_tokens": 1, "calib_tokens": 1, "ctx": 2, "last_k": 1, "batch_size": 1,
                                     "tokens_per_step": 0},
                     fractions={"rsparse_alpha": (0.0, 1.0)})
        for name in ("ppl_tolerances", "sparsities"):
            bad = [v for v in getattr(self, name) if not 0 < v < 1]
            if bad:
                raise ConfigError(f"{name} must lie in (0, 1), got {bad}", hint=f"e.g. {name}=0.01,0.05")
        if not self.suites:
            raise ConfigError("suites is empty", hint="e.g. suites=toy-pythia-relu,toy-pythia-silu")
        if self.search_eps <= 0 or self.token_unit <= 0:
            raise ConfigError("search_eps and token_unit must be > 0", hint="search_eps=1e-4 token_unit=1e6")
