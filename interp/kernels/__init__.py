"""Sparse activation kernels: encode, decode, gathers, feature-major index, latent statistics, input-sparse linear.

Every decoding op (not the index helpers gather_tokens, to_feature_major) takes
`backend="auto" | "triton" | <torch backends>`; 'auto' picks Triton on CUDA and a torch backend elsewhere. When
Triton is missing (or tensors are on the CPU without TRITON_INTERPRET=1), an explicit
backend="triton" falls back to the torch backend with a RuntimeWarning saying why.
"""

from interp.kernels.backend import interpret_mode, triton_status
from interp.kernels.decode import DECODE_BACKENDS, decode, decode_reference
from interp.kernels.encode import encode_threshold, encode_topk, threshold_from_dense, topk_from_dense
from interp.kernels.gather import from_feature_major, gather_features, gather_tokens, to_feature_major
from interp.kernels.sparse_linear import is_column_major, magnitude_threshold, sparse_linear, to_column_major
from interp.kernels.stats import LatentStats, latent_stats, top_examples
from interp.kernels.stream import stream_to_device
from interp.kernels.types import FeatureMajor, SparseActs

__all__ = [
    "DECODE_BACKENDS", "FeatureMajor", "LatentStats", "SparseActs", "decode", "decode_reference",
    "encode_threshold", "encode_topk", "from_feature_major", "gather_features", "gather_tokens",
    "interpret_mode", "is_column_major", "latent_stats", "magnitude_threshold", "sparse_linear",
    "stream_to_device", "threshold_from_dense", "to_column_major", "to_feature_major", "top_examples",
    "topk_from_dense", "triton_status",
]
