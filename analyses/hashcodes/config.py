"""Config of the hash-codes analysis: digits sweeps (width, training time, sample size) and the embedded-LM part."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from interp.config_checks import check_ranges, check_types
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
class Config:
    """Options of `analyses.hashcodes.run`; the defaults run offline in a few CPU-minutes (3-seed width sweep)."""

    sweep: str = "default"  # "default" or "full" (FULL_SWEEP sizes replace the size fields below)
    # --- digits MLPs (scikit-learn load_digits, stratified 80/20 split, random_state=0)
    widths: list[int] = field(default_factory=lambda: [2, 5, 10, 20, 40, 100, 200])  # per-layer width
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    depth: int = 1
    batchnorm: bool = False
    schedule: str = "sklearn"  # "sklearn" (MLPClassifier defaults, the spec's table) or "paper" (Keras, lr 1e-2)
    init: str = "glorot"  # "glorot" (reference, MLPClassifier / Keras) or "torch"
    max_epochs: int = 0  # 0 = the schedule's own (500 sklearn, 200 paper)
    early_stopping: bool = True
    train_dtype: str = "float64"  # "float64" (as scikit-learn's MLPClassifier) or "float32"
    # --- training-time sweep: metrics at these epochs of the width runs (after an early stop: the final model)
    epoch_checkpoints: list[int] = field(default_factory=lambda: [0, 1, 10, 30, 100, 500])
    epoch_metrics: list[str] = field(default_factory=lambda: ["knn"])
    # --- sample-size sweep: random subsets tiled to the full training set (reference run_sample_size_*)
    sample_sizes: list[int] = field(default_factory=lambda: [10, 30, 100, 300, 1437])
    sample_widths: list[int] = field(default_factory=lambda: [10, 40, 100])
    sample_seeds: list[int] = field(default_factory=lambda: [0])
    sample_metrics: list[str] = field(default_factory=lambda: ["knn"])
    # --- codes and metrics
    drop_fit_on: str = "union"  # constant units fitted on "union" (train ∪ test, reference) or "train"
    k: int = 9
    # "brute": exact packed-popcount k-NN with scikit-learn's brute tie rule at every code length (see knn_predict);
    # "auto": scikit-learn's own choice as the reference ran it (ball tree <= 15 bits: another tie order)
    knn_algorithm: str = "brute"
    kmeans_seed: int = 9
    lr_seed: int = 9
    lr_max_iter: int = 100  # the reference repo's (old scikit-learn default); the spec's digits table used 1000
    # "auto": newton-cholesky for codes <= 256 bits (the reference's objective, L2 and C=1, ~6x faster than its
    # lbfgs; both converge here), lbfgs for longer codes
    lr_solver: str = "auto"
    # --- phase chart regimes, read off RR on the training set (determinism = one example per region)
    rr_sufficient: float = 0.01  # RR_train <= this: sufficiently expressive
    rr_under: float = 0.5  # RR_train >= this: under-expressive; in between: critically expressive
    n_threads: int = 1  # BLAS/OpenMP/torch threads while running (restored afterwards)
    # --- embedded language model: MLP codes over tokens and probe prompts (skipped if the model is absent)
    lm: bool = True
    model: str = "toy-pythia-4l"
    step: int = -1  # checkpoint step; -1 = the last one
    lm_hooks: str = "blocks.*.mlp.hook_post"
    lm_threshold: float = 0.0  # GELU(x) > 0 <=> x > 0, so 0 is the pre-activation sign
    lm_tokens: int = 4096  # held-out tokens for the token-level redundancy ratio
    lm_ctx: int = 64
    lm_probes_per_feature: int = 100
    lm_test_fraction: float = 0.3

    def resolved(self) -> Config:
        """Validate, and apply the full sweep's sizes when sweep == 'full'."""
        check_types(self)
        check_ranges(self, at_least={"max_epochs": 0, "lr_max_iter": 1, "k": 1, "n_threads": 1, "lm_tokens": 1,
                                     "lm_ctx": 2, "lm_probes_per_feature": 1, "step": -1},
                     fractions={"lm_test_fraction": (0.01, 0.99)})
        if self.sweep not in ("default", "full"):
            raise ConfigError(f"unknown sweep '{self.sweep}'", hint="use 'default' or 'full'")
        if not self.widths:
            raise ConfigError("widths is empty", hint="use widths=[2,8,32] or more")
        if self.sweep == "full":  # the full sweep sets these sizes; explicit ones would be dropped silently
            mine = [k for k in FULL_SWEEP if getattr(self, k) != getattr(Config(), k)]
            if mine:
                raise ConfigError(f"sweep=full sets {', '.join(mine)} itself; the values given would be ignored",
                                  hint="drop sweep=full to use your sizes, or drop the sizes to run the full sweep")
        cfg = replace(self, **FULL_SWEEP) if self.sweep == "full" else replace(self)
        for name in ("widths", "seeds", "epoch_checkpoints", "sample_sizes", "sample_widths", "sample_seeds"):
            vals = getattr(cfg, name)
            if not isinstance(vals, (list, tuple)) or not all(isinstance(v, int) for v in vals):
                raise ConfigError(f"{name} must be a list of integers, got {vals!r}", hint=f"e.g. {name}=[1,2,3]")
            if name in ("widths", "sample_widths", "sample_sizes") and any(v < 1 for v in vals):
                raise ConfigError(f"{name} must be positive, got {vals}", hint="use integers >= 1")
        if not cfg.seeds:
            raise ConfigError("seeds is empty", hint="use seeds=[0] or more")
        for name in ("epoch_metrics", "sample_metrics"):
            bad = [m for m in getattr(cfg, name) if m not in METRICS]
            if bad:
                raise ConfigError(f"unknown {name} {bad}", hint=f"choose from {', '.join(METRICS)}")
        if cfg.schedule not in ("sklearn", "paper"):
            raise ConfigError(f"unknown schedule '{cfg.schedule}'", hint="use 'sklearn' or 'paper'")
        if cfg.drop_fit_on not in ("union", "train"):
            raise ConfigError(f"unknown drop_fit_on '{cfg.drop_fit_on}'", hint="use 'union' or 'train'")
        if cfg.knn_algorithm not in ("auto", "brute"):
            raise ConfigError(f"unknown knn_algorithm '{cfg.knn_algorithm}'", hint="use 'brute' or 'auto'")
        if not 0 <= cfg.rr_sufficient < cfg.rr_under <= 1:
            raise ConfigError("need 0 <= rr_sufficient < rr_under <= 1", hint="e.g. rr_sufficient=0.01 rr_under=0.5")
        if cfg.train_dtype not in ("float64", "float32"):
            raise ConfigError(f"unknown train_dtype '{cfg.train_dtype}'", hint="use 'float64' or 'float32'")
        if cfg.lr_solver not in ("auto", "lbfgs", "newton-cholesky", "newton-cg", "liblinear", "sag", "saga"):
            raise ConfigError(f"unknown lr_solver '{cfg.lr_solver}'", hint="use 'lbfgs' or 'newton-cholesky'")
        if cfg.k < 1 or cfg.depth < 1:
            raise ConfigError("k and depth must be >= 1", hint="use k=9, depth=1")
        if cfg.lm and (cfg.lm_ctx < 2 or cfg.lm_tokens < cfg.lm_ctx):
            raise ConfigError(f"lm_tokens={cfg.lm_tokens} must cover one block of lm_ctx={cfg.lm_ctx} >= 2",
                              hint="use lm_ctx=64, lm_tokens=4096")
        return cfg

    def as_dict(self) -> dict:
        """Plain dict of all fields (for result.config)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
