"""Config of the hash-codes analysis: digits sweeps (width, training time, sample size) and the embedded-LM part."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from interp.analysis import AnalysisConfig
from interp.config_checks import check_ranges
from interp.errors import ConfigError

# Paper-like sizes (reference sweeps: MNIST widths 3..100, 16 epoch checkpoints, 14 sample sizes, 10 repeats),
# scaled to digits (1437 training samples); an estimated hour or more on 2 cores. Config(sweep="full").
FULL_SWEEP: dict[str, object] = {
    "widths": [2, 3, 5, 7, 10, 15, 20, 23, 27, 30, 33, 37, 40, 43, 47, 50, 53, 57, 60, 65, 70, 75, 80, 90, 100,
               150, 200],
    "seeds": list(range(10)),
    "epoch_checkpoints": [0, 1, 3, 6, 10, 20, 30, 40, 60, 80, 100, 120, 140, 160, 180, 200, 300, 400, 500],
    "epoch_metrics": ["knn", "logreg", "kmeans"],
    "sample_sizes": [10, 20, 30, 60, 100, 200, 300, 600, 1000, 1437],
    "sample_widths": [5, 10, 20, 40, 60, 100, 200],
    "sample_seeds": list(range(5)),
    "sample_metrics": ["knn", "logreg", "kmeans"],
    "lm_tokens": 32768,
    "lr_max_iter": 1000,
    "lr_solver": "lbfgs",
}

METRICS = ("knn", "logreg", "kmeans")


@dataclass
class Config(AnalysisConfig):
    """Options of `analyses.hashcodes.run`; the defaults run offline in a few CPU-minutes (3-seed width sweep).

    `model`, `step` and `data` are the language model and text of the LM study; the digits sweeps use `seeds`.
    """

    model: str = "toy-pythia-4l"  # the language model of the LM study (skipped if absent)
    sweep: Literal["default", "full"] = "default"  # "default" or "full" (FULL_SWEEP sizes replace the size fields)
    # --- digits MLPs (scikit-learn load_digits, stratified 80/20 split, random_state=0)
    widths: list[int] = field(default_factory=lambda: [2, 5, 10, 20, 40, 100, 200])  # per-layer width
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # network seeds per width (the paper averages over 10)
    depth: int = 1  # hidden layers of the MLP
    batchnorm: bool = False  # batch normalisation after each hidden layer (the paper's BN variant)
    schedule: Literal["sklearn", "paper"] = "sklearn"  # "sklearn" (MLPClassifier defaults, the spec's table) or
                                                    # "paper" (Keras, lr 1e-2)
    init: Literal["glorot", "torch"] = "glorot"  # "glorot" (reference, MLPClassifier / Keras) or "torch"
    max_epochs: int = 0  # 0 = the schedule's own (500 sklearn, 200 paper)
    early_stopping: bool = True  # stop when the validation score stalls (MLPClassifier's rule)
    train_dtype: Literal["float64", "float32"] = "float64"  # "float64" (as scikit-learn's MLPClassifier) or "float32"
    # --- training-time sweep: metrics at these epochs of the width runs (after an early stop: the final model)
    epoch_checkpoints: list[int] = field(default_factory=lambda: [0, 1, 10, 30, 100, 500])  # epochs scored
    epoch_metrics: list[Literal["knn", "logreg", "kmeans"]] = field(default_factory=lambda: ["knn"])  # per epoch
    # --- sample-size sweep: random subsets tiled to the full training set (reference run_sample_size_*)
    sample_sizes: list[int] = field(default_factory=lambda: [10, 30, 100, 300, 1437])  # training-subset sizes
    sample_widths: list[int] = field(default_factory=lambda: [10, 40, 100])  # widths of the sample-size sweep
    sample_seeds: list[int] = field(default_factory=lambda: [0])  # seeds of the sample-size sweep
    sample_metrics: list[Literal["knn", "logreg", "kmeans"]] = field(default_factory=lambda: ["knn"])  # its metrics
    # --- codes and metrics
    drop_fit_on: Literal["union", "train"] = "union"  # constant units fitted on "union" (train ∪ test, reference)
                                                   # or "train"
    k: int = 9  # neighbours of the k-NN categorisation (the paper's 9)
    # "brute": exact packed-popcount k-NN with scikit-learn's brute tie rule at every code length (see knn_predict);
    # "auto": scikit-learn's own choice as the reference ran it (ball tree <= 15 bits: another tie order)
    knn_algorithm: Literal["brute", "auto"] = "brute"  # see the comment above
    kmeans_seed: int = 9  # K-means seed (the reference's)
    lr_seed: int = 9  # logistic-regression seed (the reference's)
    lr_max_iter: int = 100  # the reference repo's (old scikit-learn default); the spec's digits table used 1000
    # "auto": newton-cholesky for codes <= 256 bits (the reference's objective, L2 and C=1, ~6x faster than its
    # lbfgs; both converge here), lbfgs for longer codes
    lr_solver: Literal["auto", "lbfgs", "newton-cholesky", "newton-cg", "liblinear", "sag", "saga"] = "auto"  # above
    # --- phase chart regimes, read off RR on the training set (determinism = one example per region)
    rr_sufficient: float = 0.01  # RR_train <= this: sufficiently expressive
    rr_under: float = 0.5  # RR_train >= this: under-expressive; in between: critically expressive
    n_threads: int = 1  # BLAS/OpenMP/torch threads while running (restored afterwards)
    # --- embedded language model: MLP codes over tokens and probe prompts (skipped if the model is absent)
    lm: bool = True  # run the language-model study (skipped with a reason if the model is absent)
    lm_hooks: str = "blocks.*.mlp.hook_post"  # hooks whose sign patterns are the LM's codes
    lm_threshold: float = 0.0  # GELU(x) > 0 <=> x > 0, so 0 is the pre-activation sign
    lm_tokens: int = 4096  # held-out tokens for the token-level redundancy ratio
    lm_ctx: int = 64  # tokens per block of the LM study
    lm_probes_per_feature: int = 100  # labelled probe prompts per planted feature
    lm_test_fraction: float = 0.3  # share of the probes held out for the categorisation

    def resolved(self) -> Config:
        """The config the run uses: the full sweep's sizes applied when sweep == 'full' (validated)."""
        return replace(self, **FULL_SWEEP) if self.sweep == "full" else replace(self)

    def check(self) -> None:
        """Refuse values that cannot run, also those of the sizes the full sweep sets."""
        check_ranges(self, at_least={"max_epochs": 0, "lr_max_iter": 1, "k": 1, "n_threads": 1, "lm_tokens": 1,
                                     "lm_ctx": 2, "lm_probes_per_feature": 1},
                     fractions={"lm_test_fraction": (0.01, 0.99)})
        if not self.widths:
            raise ConfigError("widths is empty", hint="use widths=[2,8,32] or more")
        if self.sweep == "full":  # the full sweep sets these sizes; explicit ones would be dropped silently
            mine = [k for k in FULL_SWEEP if getattr(self, k) != getattr(Config(), k)]
            if mine:
                raise ConfigError(f"sweep=full sets {', '.join(mine)} itself; the values given would be ignored",
                                  hint="drop sweep=full to use your sizes, or drop the sizes to run the full sweep")
        cfg = self.resolved()
        for name in ("widths", "seeds", "epoch_checkpoints", "sample_sizes", "sample_widths", "sample_seeds"):
            vals = getattr(cfg, name)
            if not isinstance(vals, (list, tuple)) or not all(isinstance(v, int) for v in vals):
                raise ConfigError(f"{name} must be a list of integers, got {vals!r}", hint=f"e.g. {name}=[1,2,3]")
            if name in ("widths", "sample_widths", "sample_sizes") and any(v < 1 for v in vals):
                raise ConfigError(f"{name} must be positive, got {vals}", hint="use integers >= 1")
        if not cfg.seeds:
            raise ConfigError("seeds is empty", hint="use seeds=[0] or more")
        if not 0 <= cfg.rr_sufficient < cfg.rr_under <= 1:
            raise ConfigError("need 0 <= rr_sufficient < rr_under <= 1", hint="e.g. rr_sufficient=0.01 rr_under=0.5")
        if cfg.k < 1 or cfg.depth < 1:
            raise ConfigError("k and depth must be >= 1", hint="use k=9, depth=1")
        if cfg.lm and (cfg.lm_ctx < 2 or cfg.lm_tokens < cfg.lm_ctx):
            raise ConfigError(f"lm_tokens={cfg.lm_tokens} must cover one block of lm_ctx={cfg.lm_ctx} >= 2",
                              hint="use lm_ctx=64, lm_tokens=4096")
