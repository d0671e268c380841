"""Activation-pattern hash codes (He, Lei, Ji, Tao 2021, "Neural networks behave as hash encoders").

    from analyses.hashcodes import Config, run
    result = run()                       # digits width / training-time / sample-size sweeps + the embedded LM
    result.figures()                     # redundancy and categorisation vs width, epochs, samples; phase charts

The maths lives in codes.py (codes, packing, redundancy ratio, occupancy) and categorize.py (K-means mappings,
packed Hamming k-NN, OvO logistic regression); digits.py / ensemble.py train the MLPs; sweeps.py runs the sweeps.
"""

from analyses.hashcodes.categorize import (
    cluster_accuracy,
    hamming_knn_predict,
    knn_predict,
    tie_aware_knn_accuracy,
)
from analyses.hashcodes.codes import (
    PackedCodes,
    activation_codes,
    drop_constant,
    pack,
    redundancy_ratio,
    region_occupancy,
)
from analyses.hashcodes.config import FULL_SWEEP, Config
from analyses.hashcodes.result import HashCodesResult
from analyses.hashcodes.studies import run
from interp.analysis import Analysis

ANALYSIS = Analysis(
    name="hashcodes", title=HashCodesResult.title, config=Config, run=run, result=HashCodesResult,
    quick={"widths": [5, 40, 100], "seeds": [0], "epoch_checkpoints": [0, 10, 100], "sample_sizes": [100, 1437],
           "sample_widths": [40], "sample_seeds": [0], "lm_tokens": 1024},
)

__all__ = ["ANALYSIS", "Config", "FULL_SWEEP", "HashCodesResult", "run", "activation_codes", "redundancy_ratio",
           "region_occupancy", "cluster_accuracy", "hamming_knn_predict", "knn_predict", "tie_aware_knn_accuracy",
           "pack", "PackedCodes", "drop_constant"]
