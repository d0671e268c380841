"""Options of the obsprop analysis; every default runs on the embedded default model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from interp.analysis import AnalysisConfig
from interp.config_checks import check_ranges
from interp.errors import ConfigError


@dataclass
class Config(AnalysisConfig):
    """obsprop options (all simple types so `interp analyze obsprop --set key=value` can set them).

    `data` is the held-out text the feature scores and couplings are measured on; `probes_dir` the labelled
    prompts (features.json + probes.jsonl) that define the observables' tasks.
    """

    model: str = "toy-pythia-4l"
    """Embedded suite name, local HF folder or transformer-lens name ("" = interp.models.DEFAULT_MODEL); Mistral,
    Qwen2, Qwen3 and Phi-3 folders are converted to transformer-lens."""
    probes_dir: str = ""
    """Folder with features.json + probes.jsonl ("" = the embedded data/corpus)."""
    n_pairs: int = 64
    """Counterfactual prompt pairs per task (path patching, reference points)."""
    path_depth: int = 2
    """Depth of the greedy path search."""
    beam: int = 4
    """Beam width of the greedy path search."""
    top_heads: int = 3
    """At most this many heads "carry" a feature (ranked by path-patching effect) ..."""
    carry_frac: float = 0.1
    """... each with at least this fraction of the best head's effect."""
    ln_mode: Literal["none", "approx", "frozen", "exact"] = "approx"
    """LayerNorm pullback: none, approx (the paper's: divide by the LN scale), frozen (cached scale) or exact."""
    approx_norm: Literal["scale", "raw", "unit"] = "scale"
    """Scale of the approximate LN pullback: the LN scale at the token, ||x||/√d (reference code) or 1."""
    ln_final: Literal["token", "boundary"] = "token"
    """Final LN: ln_mode at the last token, or the tangent at the decision boundary between the positive and
    negative prompts' mean residuals."""
    mlp_mode: Literal["point", "boundary", "linear"] = "boundary"
    """MLP pullback: the gradient at the point, averaged along the segment to the decision boundary, or of the
    linearised MLP."""
    score_tokens: int = 32768
    """Held-out tokens for feature scores and name-token activations."""
    ctx: int = 128
    """Block length of the held-out scoring."""
    cache: str = ""
    """An interp activation cache to score over (hooks blocks.L.hook_resid_pre; else computed from `data`)."""
    n_train: int = 30
    """Per-class training examples of the low-data baselines (30 + 30 in the paper)."""
    n_repeats: int = 20
    """Random 30 + 30 draws the baselines are averaged over."""
    n_gauss: int = 200_000
    """Gaussian samples of the isotropic coupling self-check (the test uses 1e6)."""
    n_scatter: int = 3000
    """Score points kept for the coupling scatter figure."""

    def check(self) -> None:
        """Raise ConfigError on any out-of-range option."""
        check_ranges(self, at_least={"n_gauss": 1, "n_scatter": 0}, fractions={"carry_frac": (0.0, 1.0)})
        for k in ("n_pairs", "path_depth", "beam", "top_heads", "score_tokens", "n_train", "n_repeats"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{k} must be >= 1, got {getattr(self, k)}", hint=f"set {k} to a positive int")
        if self.ctx < 8:
            raise ConfigError(f"ctx must be >= 8, got {self.ctx}", hint="use ctx=128")
        if not self.cache and self.score_tokens < self.ctx:
            raise ConfigError(f"score_tokens={self.score_tokens} is less than one block of ctx={self.ctx}",
                              hint=f"set score_tokens >= {self.ctx}")
