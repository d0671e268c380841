"""Local Interaction Basis (Bushnaq et al. 2024, arXiv 2405.10928; "RIB" in ApolloResearch/rib).

`run(Config())` builds LIB and PCA graphs of the shipped modular-addition transformer, ablates nodes and edges,
and labels directions by their Fourier spectra. The maths is in `linalg`, `jacobian`, `basis` and `ablation`.
"""

from analyses.lib.analysis import run
from analyses.lib.basis import LIBLayer, from_lib, lib_basis, lib_build, lib_edges, to_lib
from analyses.lib.config import Config
from analyses.lib.result import LIBResult

__all__ = ["Config", "run", "LIBResult", "LIBLayer", "lib_basis", "lib_build", "lib_edges", "to_lib", "from_lib"]
