"""Options of the SAE evals; every default runs on the embedded default model and its shipped SAEs."""

from __future__ import annotations

from dataclasses import dataclass, field

from interp.analysis import AnalysisConfig
from interp.config_checks import check_ranges
from interp.errors import ConfigError


@dataclass
class Config(AnalysisConfig):
    """Which SAEs, on which tokens, and the thresholds of the latent census."""

    model: str = "toy-pythia-4l"
    """The model the SAEs belong to: an embedded suite name, a local Hugging Face folder or a TL name."""
    saes: str = ""
    """A folder with an index.json of SAEs and/or transcoders, or one sae-lens SAE or transcoder folder ("" =
    data/saes/<model>, the shipped ones)."""
    names: list[str] = field(default_factory=list)
    """Only the SAEs of these names (empty = every SAE of the folder)."""
    cache: str = ""
    """An interp cache of the SAEs' hooks holding whole sequences: rows and token blocks are read from it."""
    n_tokens: int = 16_384
    """Tokens evaluated (from `data`, or the first rows of `cache`)."""
    ctx: int = 128
    """Tokens per sequence (ignored with a cache, which says its own)."""
    batch_size: int = 16
    """Sequences per forward pass."""
    dense_density: float = 0.1
    """A latent firing on more than this fraction of tokens is counted dense."""
    density_bins: int = 40
    """Bins of the log10 feature-density histogram."""
    loss: bool = True
    """Also splice each SAE into the forward: CE and KL loss recovered against zero and mean ablation."""

    def check(self) -> None:
        check_ranges(self, at_least={"n_tokens": 1, "ctx": 2, "batch_size": 1, "density_bins": 2},
                     fractions={"dense_density": (0.0, 1.0)})
        if not self.cache and self.n_tokens < self.ctx:
            raise ConfigError(f"n_tokens={self.n_tokens} is less than one block of ctx={self.ctx}",
                              hint=f"set n_tokens >= {self.ctx}")
