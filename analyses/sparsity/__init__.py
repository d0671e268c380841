"""Activation sparsity across training and the speed it buys (Lazy Neuron, Sparsing Law, TEAL, CATS, WINA, R-Sparse).

The maths is in `metrics` (nonzero fraction, FAT-ε, CETT and its threshold), `search` (CETT-PPL-p%, Algorithm 1),
`trends` (the two activation-ratio laws, bounded multi-start fits) and `methods` (TEAL thresholds and greedy
allocation, CATS, WINA, R-Sparse). `weights` gives each projection's consuming matrix for transformer-lens models
and natively run Hugging Face decoders alike, `suites` the checkpoints of embedded suites and users' run folders.
"""

from interp.analysis import Analysis

from .config import Config
from .result import SparsityResult
from .studies import run

ANALYSIS = Analysis(
    name="sparsity", title=SparsityResult.title, config=Config, run=run, result=SparsityResult,
    quick={"n_tokens": 1024, "calib_tokens": 1024, "ppl_tolerances": [0.01], "last_k": 3, "search_eps": 1e-3,
           "sparsities": [0.4, 0.5], "per_layer": False},
)

__all__ = ["ANALYSIS", "Config", "run", "SparsityResult"]
