"""Massive activations across training checkpoints (Sun et al. 2024; Gallego-Feliciano et al. 2025).

`run(Config())` sweeps the embedded suite's checkpoints: per-layer top-1/median ratios of the decoder-layer outputs,
the five-parameter curve fit per layer (Lambert-W peak, early-peak/log-increase regime), detection rows, zero/mean
interventions and the architecture → parameter predictor.
"""

from interp.analysis import Analysis

from .config import Config
from .curve import fit_ma_curve, fit_ma_curve_paper, ma_curve, ma_curve_reparam, peak_observable, t_peak
from .intervene import intervene_massive
from .method import detect_massive, detect_massive_dims, is_massive, layer_outputs, massive_stats
from .predictor import arch_features, fit_param_predictors
from .result import MassiveResult
from .studies import ma_trajectory, run
from .sweep import checkpoint_sweep

ANALYSIS = Analysis(
    name="massive", title=MassiveResult.title, config=Config, run=run, result=MassiveResult,
    quick={"checkpoints": [0, 8, 64, 256, 512, 1000, 3000], "n_inputs": 4, "compare_alternatives": False},
)

__all__ = ["ANALYSIS", "Config", "run", "MassiveResult", "ma_curve", "ma_curve_reparam", "fit_ma_curve",
           "fit_ma_curve_paper",
           "t_peak", "peak_observable", "layer_outputs", "massive_stats", "is_massive", "detect_massive",
           "detect_massive_dims", "intervene_massive", "checkpoint_sweep", "ma_trajectory", "arch_features",
           "fit_param_predictors"]
