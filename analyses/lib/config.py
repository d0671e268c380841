"""Configuration of the LIB analysis (defaults: the spec's seed-0 modular-addition build on the shipped model)."""

from __future__ import annotations

from dataclasses import dataclass, field

from interp.config_checks import check_ranges, check_types
from interp.errors import ConfigError


@dataclass
class Config:
    """Every field has a default that runs on the shipped modular-addition transformer (data/lib)."""

    model: str = "modadd"              # "modadd" (shipped, see `seed`) or an interp.models name / HF folder
    seed: int = 0                      # which shipped mod-add model (0, 1, 2)
    step: int = -1                     # checkpoint step for interp.models (-1 = latest)
    node_layers: list[str] = field(default_factory=lambda: ["ln1.0", "ln2.0", "unembed", "output"])
    last_pos_only: bool = True         # after the last attention, keep only the last position (rib: add_resid1)
    basis: str = "jacobian"            # jacobian | (1-0)*alpha | (1-alpha)^2 | svd | neuron
    edge_formula: str = "squared"      # squared | functional
    integration: str = "gradient"      # gradient | trapezoidal | gauss-legendre
    n_intervals: int = 0
    center: bool = True
    rotate_final_node_layer: bool = False  # PCA basis on the final node layer (rib's flag); False = identity
    truncation: float = 1e-15
    n_samples: int = 0                 # samples for the graph (0 = the whole mod-add train set)
    compare_pca: bool = True           # also build the PCA (svd) graph for the comparisons
    node_ablation: bool = True
    edge_ablation: bool = True
    n_eval_samples: int = 3000         # test samples for node ablation (0 = whole test set)
    n_edge_eval_samples: int = 0       # samples for the edge bisection (0 = the whole set; one forward per mask row)
    edge_eval_set: str = "train"       # "train" (rib's edge-bisect configs) or "test" (random test samples)
    edge_tolerance: float = 1e-3       # edges needed to stay within this accuracy of the unablated model
    node_fraction: float = 0.99        # node-ablation threshold: fraction of the unablated accuracy
    n_fourier_dirs: int = 20
    lm_blocks: int = 8                 # language models: token blocks of the embedded corpus (half build, half eval)
    lm_ctx: int = 8                    # LM Jacobians cover every (position, dim) output: keep contexts short
    jacobian_method: str = "auto"      # auto (closed form where available) | vmap | loop (reference-style)

    def validate(self) -> None:
        """Raise ConfigError for values the analysis cannot run with."""
        from analyses.lib.basis import BASES, EDGE_FORMULAS
        from analyses.lib.linalg import integration_points

        check_types(self)
        if self.model == "modadd" and self.step != -1:
            raise ConfigError(f"step={self.step} does not apply to the shipped mod-add models (one checkpoint each)",
                              hint="choose the model with seed=0|1|2, or leave step at -1")
        check_ranges(self, at_least={"n_samples": 0, "n_eval_samples": 0, "n_edge_eval_samples": 0,
                                     "n_fourier_dirs": 1, "n_intervals": 0, "step": -1})
        if self.basis not in BASES:
            raise ConfigError(f"unknown basis '{self.basis}'", hint=f"use one of {', '.join(BASES)}")
        if self.edge_formula not in EDGE_FORMULAS:
            raise ConfigError(f"unknown edge formula '{self.edge_formula}'", hint=f"use {', '.join(EDGE_FORMULAS)}")
        integration_points(self.n_intervals, self.integration)
        if len(self.node_layers) < 2:
            raise ConfigError("LIB needs at least two node layers", hint="e.g. ln1.0,ln2.0,unembed,output")
        if self.jacobian_method not in ("auto", "vmap", "loop"):
            raise ConfigError(f"unknown jacobian_method '{self.jacobian_method}'", hint="use auto, vmap or loop")
        if self.edge_eval_set not in ("test", "train"):
            raise ConfigError(f"unknown edge_eval_set '{self.edge_eval_set}'", hint="use test or train")
        if not 0 < self.node_fraction <= 1:
            raise ConfigError("node_fraction must be in (0, 1]", hint="e.g. 0.99")
        if self.lm_blocks < 1 or self.lm_ctx < 1:
            raise ConfigError(f"lm_blocks={self.lm_blocks} and lm_ctx={self.lm_ctx} must be >= 1",
                              hint="use lm_blocks=8, lm_ctx=8")
