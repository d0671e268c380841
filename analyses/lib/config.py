"""Configuration of the LIB analysis (defaults: the spec's seed-0 modular-addition build on the shipped model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from interp.analysis import AnalysisConfig
from interp.config_checks import check_ranges
from interp.errors import ConfigError


@dataclass
class Config(AnalysisConfig):
    """Every field has a default that runs on the shipped modular-addition transformer (data/lib).

    `seed` also picks which shipped mod-add model (0, 1, 2) runs; `data` feeds the language-model mode.
    """

    model: str = "modadd"              # "modadd" (shipped, see `seed`) or an interp.models name / HF folder
    node_layers: list[str] = field(default_factory=lambda: ["ln1.0", "ln2.0", "unembed", "output"])
    """Node layers of the interaction graph (module boundaries where LIB bases are built)."""
    last_pos_only: bool = True         # after the last attention, keep only the last position (rib: add_resid1)
    basis: Literal["jacobian", "(1-0)*alpha", "(1-alpha)^2", "svd", "neuron"] = "jacobian"  # LIB basis formula
                                       # (jacobian is the paper's; svd = PCA; neuron = the identity)
    edge_formula: Literal["squared", "functional"] = "squared"  # interaction-edge formula
    integration: Literal["gradient", "trapezoidal", "gauss-legendre"] = "gradient"  # integrated-gradient rule
    n_intervals: int = 0               # integration intervals (gradient needs 0)
    center: bool = True                # centre the activations (one constant direction carries the mean)
    rotate_final_node_layer: bool = False  # PCA basis on the final node layer (rib's flag); False = identity
    truncation: float = 1e-15          # eigenvalues below this (relative) are dropped
    n_samples: int = 0                 # samples for the graph (0 = the whole mod-add train set)
    compare_pca: bool = True           # also build the PCA (svd) graph for the comparisons
    node_ablation: bool = True         # ablate LIB/PCA directions layer by layer (node thresholds)
    edge_ablation: bool = True         # bisect the edges needed to keep the accuracy (edge totals)
    n_eval_samples: int = 3000         # test samples for node ablation (0 = whole test set)
    n_edge_eval_samples: int = 0       # samples for the edge bisection (0 = the whole set; one forward per mask row)
    edge_eval_set: Literal["train", "test"] = "train"  # "train" (rib's edge-bisect configs) or "test" (random
                                       # test samples)
    edge_tolerance: float = 1e-3       # edges needed to stay within this accuracy of the unablated model
    node_fraction: float = 0.99        # node-ablation threshold: fraction of the unablated accuracy
    n_fourier_dirs: int = 20          # leading directions whose Fourier spectra are labelled (mod-add)
    lm_blocks: int = 8                 # language models: token blocks of the embedded corpus (half build, half eval)
    lm_ctx: int = 8                    # LM Jacobians cover every (position, dim) output: keep contexts short
    jacobian_method: Literal["auto", "vmap", "loop"] = "auto"  # auto (closed form where available) | vmap | loop
                                       # (reference-style)

    def check(self) -> None:
        """Raise ConfigError for values the analysis cannot run with."""
        from analyses.lib.linalg import integration_points

        if self.model == "modadd" and self.step != -1:
            raise ConfigError(f"step={self.step} does not apply to the shipped mod-add models (one checkpoint each)",
                              hint="choose the model with seed=0|1|2, or leave step at -1")
        check_ranges(self, at_least={"n_samples": 0, "n_eval_samples": 0, "n_edge_eval_samples": 0,
                                     "n_fourier_dirs": 1, "n_intervals": 0})
        integration_points(self.n_intervals, self.integration)
        if len(self.node_layers) < 2:
            raise ConfigError("LIB needs at least two node layers", hint="e.g. ln1.0,ln2.0,unembed,output")
        if not 0 < self.node_fraction <= 1:
            raise ConfigError("node_fraction must be in (0, 1]", hint="e.g. 0.99")
        if self.lm_blocks < 1 or self.lm_ctx < 1:
            raise ConfigError(f"lm_blocks={self.lm_blocks} and lm_ctx={self.lm_ctx} must be >= 1",
                              hint="use lm_blocks=8, lm_ctx=8")
