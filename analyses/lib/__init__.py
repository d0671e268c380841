"""Local Interaction Basis (Bushnaq et al. 2024, arXiv 2405.10928; "RIB" in ApolloResearch/rib).

`run(Config())` builds LIB and PCA graphs of the shipped modular-addition transformer, ablates nodes and edges,
and labels directions by their Fourier spectra. The maths is in `linalg`, `jacobian`, `basis` and `ablation`.
"""

from analyses.lib.basis import LIBLayer, from_lib, lib_basis, lib_build, lib_edges, to_lib
from analyses.lib.config import Config
from analyses.lib.result import LIBResult
from analyses.lib.studies import run
from interp.analysis import Analysis

ANALYSIS = Analysis(
    name="lib", title=LIBResult.title, config=Config, run=run, result=LIBResult,
    quick={"n_samples": 2000, "n_eval_samples": 500, "n_edge_eval_samples": 200},
)

__all__ = ["ANALYSIS", "Config", "run", "LIBResult", "LIBLayer", "lib_basis", "lib_build", "lib_edges", "to_lib",
           "from_lib"]
