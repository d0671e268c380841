"""Options of the obsprop analysis; every default runs on the embedded default model."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from interp.config_checks import check_device, check_ranges, check_types
from interp.errors import ConfigError

from .method import MLP_MODES
from .observables import APPROX_NORMS, LN_MODES


@dataclass
class Config:
    """obsprop options (all simple types so `interp analyze obsprop --set key=value` can set them)."""

    model: str = ""                 # embedded suite name, local HF folder or TL name; "" = interp.models.DEFAULT_MODEL
    step: int = -1                  # checkpoint step; -1 = the final one
    data_dir: str = ""              # folder with features.json + probes.jsonl; "" = embedded data/corpus
    n_pairs: int = 64               # counterfactual prompt pairs per task (path patching, references)
    path_depth: int = 2             # greedy path search depth
    beam: int = 4                   # greedy path search beam width
    top_heads: int = 3              # at most this many heads "carry" a feature (by path-patching effect) ...
    carry_frac: float = 0.1         # ... each with at least this fraction of the best head's effect
    ln_mode: str = "approx"         # none | approx (paper) | frozen | exact
    approx_norm: str = "scale"      # scale (LN scale at the token) | raw (||x||/√d, reference code) | unit
    ln_final: str = "token"         # final LN: "token" (ln_mode at the last token) | "boundary" (decision-boundary
                                    # tangent between the positive and negative prompts' mean residuals)
    mlp_mode: str = "boundary"      # point | boundary | linear
    score_tokens: int = 32768       # held-out corpus tokens for feature scores / name-token activations
    ctx: int = 128                  # block length for held-out scoring
    cache: str = ""                 # optional interp activation cache dir to score over (else computed)
    n_train: int = 30               # per-class training examples of the low-data baselines (30 + 30)
    n_repeats: int = 20             # random 30+30 draws averaged for the baselines
    n_gauss: int = 200_000          # Gaussian samples for the isotropic coupling self-check (the test uses 1e6)
    n_scatter: int = 3000           # score points kept for the coupling scatter figure
    seed: int = 0
    device: str = "cpu"

    def validate(self) -> Config:
        """Raise ConfigError on any out-of-range option."""
        check_types(self)
        check_ranges(self, at_least={"n_gauss": 1, "n_scatter": 0, "step": -1}, fractions={"carry_frac": (0.0, 1.0)})
        check_device(self.device)
        if self.ln_mode not in LN_MODES:
            raise ConfigError(f"ln_mode={self.ln_mode!r}", hint=f"one of {LN_MODES}")
        if self.approx_norm not in APPROX_NORMS:
            raise ConfigError(f"approx_norm={self.approx_norm!r}", hint=f"one of {APPROX_NORMS}")
        if self.ln_final not in ("token", "boundary"):
            raise ConfigError(f"ln_final={self.ln_final!r}", hint="token or boundary")
        if self.mlp_mode not in MLP_MODES:
            raise ConfigError(f"mlp_mode={self.mlp_mode!r}", hint=f"one of {MLP_MODES}")
        for k in ("n_pairs", "path_depth", "beam", "top_heads", "score_tokens", "n_train", "n_repeats"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{k} must be >= 1, got {getattr(self, k)}", hint=f"set {k} to a positive int")
        if self.ctx < 8:
            raise ConfigError(f"ctx must be >= 8, got {self.ctx}", hint="use ctx=128")
        if not self.cache and self.score_tokens < self.ctx:
            raise ConfigError(f"score_tokens={self.score_tokens} is less than one block of ctx={self.ctx}",
                              hint=f"set score_tokens >= {self.ctx}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)
