"""Input-sparse linear == F.linear(x * mask, W) at 0/50/90% sparsity (fp16, relative error < 1e-3)."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from interp.errors import ConfigError  # noqa: E402
from interp.kernels import (  # noqa: E402
    is_column_major,
    magnitude_threshold,
    sparse_linear,
    to_column_major,
    triton_status,
)

TRITON_OK = triton_status("cpu")[0]
BACKENDS = ["dense"] + (["triton"] if TRITON_OK else [])


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_linear_semantics_fp16(sparsity, batch, backend):
    g = torch.Generator().manual_seed(int(sparsity * 10) + batch)
    x = torch.randn(batch, 320, generator=g).half()
    w = to_column_major(torch.randn(200, 320, generator=g).half() / 16)
    bias = torch.randn(200, generator=g).half()
    t = magnitude_threshold(x, sparsity)
    frac_off = float((x.abs() <= t).float().mean())
    assert abs(frac_off - sparsity) < 0.02
    y = sparse_linear(x, w, bias, threshold=t, backend=backend)
    mask = x.abs() > t
    ref64 = F.linear(x.double() * mask, w.double(), bias.double())
    ref = F.linear(x * mask, w, bias)
    assert y.dtype == torch.float16 and y.shape == (batch, 200)
    assert _rel(y, ref64) < 1e-3
    assert _rel(y, ref) < 1e-3


@pytest.mark.skipif(not TRITON_OK, reason="triton not importable")
@pytest.mark.parametrize("config", [{"SPLIT_K": 1, "BLOCK_M": 32, "BLOCK_N": 64},
                                    {"SPLIT_K": 3, "BLOCK_M": 16, "BLOCK_N": 32},
                                    {"SPLIT_K": 7, "BLOCK_M": 16, "BLOCK_N": 32, "FP16_ATOMIC": True}])
def test_sparse_linear_split_k_and_store_paths_agree(config):
    """The atomic split-K path and the direct-store path compute the same fp32 result."""
    g = torch.Generator().manual_seed(9)
    x = torch.randn(2, 100, generator=g)
    x[x.abs() < 0.7] = 0  # input already sparse: threshold None skips exact zeros
    w = to_column_major(torch.randn(70, 100, generator=g))
    y = sparse_linear(x, w, threshold=None, backend="triton", config=config)
    torch.testing.assert_close(y, F.linear(x, w), rtol=1e-5, atol=1e-5)


def test_sparse_linear_leading_dims_bf16_and_batch_chunks():
    """[..., in] inputs keep their leading dims; > 4 rows are chunked by an explicit Triton call; bf16 works."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 64, generator=g).bfloat16()
    w = to_column_major(torch.randn(48, 64, generator=g).bfloat16())
    for be in BACKENDS:
        y = sparse_linear(x, w, threshold=0.5, backend=be)
        assert y.shape == (2, 3, 48)
        assert _rel(y, F.linear(x.double() * (x.abs() > 0.5), w.double())) < 1e-2


def test_sparse_linear_layout_and_bad_input():
    w = torch.randn(8, 16)
    assert not is_column_major(w) and is_column_major(to_column_major(w))
    assert torch.equal(to_column_major(w), w)
    if TRITON_OK:
        with pytest.raises(ConfigError, match="column-major"):
            sparse_linear(torch.randn(1, 16), w, backend="triton")
    with pytest.raises(ConfigError):
        sparse_linear(torch.randn(1, 15), w)
    with pytest.raises(ConfigError):
        sparse_linear(torch.randn(1, 16), w, threshold=-1.0)
    with pytest.raises(ConfigError):
        magnitude_threshold(torch.randn(4), 1.0)
    with pytest.raises(ConfigError, match="one dtype.*float16.*float32"):
        sparse_linear(torch.randn(1, 16).half(), w, threshold=0.5)
    with pytest.raises(ConfigError, match="bias"):
        sparse_linear(torch.randn(1, 16), w, torch.zeros(8).half(), threshold=0.5)


def test_threshold_ties_follow_torch_rounding():
    """|x| equal to the threshold rounded to x's dtype is masked off in both paths (torch compares in fp16)."""
    x = torch.tensor([[1.0, 0.5, -1.0, 2.0]], dtype=torch.float16)
    w = to_column_major(torch.eye(4, dtype=torch.float16))
    t = 0.99999  # rounds to 1.0 in fp16
    ref = F.linear(x * (x.abs() > t), w)
    for be in BACKENDS:
        assert torch.equal(sparse_linear(x, w, threshold=t, backend=be), ref)


@pytest.mark.skipif(not TRITON_OK, reason="triton not importable")
def test_fp16_atomic_output_path():
    """Split-K partials added straight into the fp16 output stay within the fp16 tolerance."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 256, generator=g).half()
    w = to_column_major((torch.randn(96, 256, generator=g) / 16).half())
    cfg = {"KERNEL": "atomic", "SPLIT_K": 8, "BLOCK_M": 32, "BLOCK_N": 32, "FP16_ATOMIC": True}
    y = sparse_linear(x, w, threshold=0.3, backend="triton", config=cfg)
    assert y.dtype == torch.float16
    assert _rel(y, F.linear(x.double() * (x.abs() > 0.3), w.double())) < 1e-3


@pytest.mark.skipif(not TRITON_OK, reason="triton not importable")
@pytest.mark.parametrize("config", [{"SPLIT_K": 1, "BLOCK_M": 16, "BLOCK_N": 32, "num_warps": 1},
                                    {"SPLIT_K": 5, "BLOCK_M": 16, "BLOCK_N": 64, "num_warps": 2},
                                    {"SPLIT_K": 64, "BLOCK_M": 8, "BLOCK_N": 16, "num_warps": 1},
                                    {"SPLIT_K": 4, "BLOCK_M": 16, "BLOCK_N": 16, "N_TILES": 3, "num_warps": 1},
                                    {"KERNEL": "dot", "SPLIT_K": 1, "BLOCK_M": 16, "BLOCK_N": 32, "num_warps": 1},
                                    {"KERNEL": "dot", "SPLIT_K": 3, "BLOCK_M": 32, "BLOCK_N": 16, "num_warps": 2,
                                     "num_stages": 3, "SUM_BLOCK": 32}])
def test_two_pass_batch1_kernel_matches_float64(config):
    """The batch-1 two-pass split-K kernel (partials + reduction, bias once) against float64, ragged sizes."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(1, 203, generator=g).half()
    w = to_column_major((torch.randn(77, 203, generator=g) / 8).half())
    bias = torch.randn(77, generator=g).half()
    y = sparse_linear(x, w, bias, threshold=0.6, backend="triton", config={"KERNEL": "two_pass", **config})
    ref = F.linear(x.double() * (x.abs() > 0.6), w.double(), bias.double())
    assert y.dtype == torch.float16 and y.shape == (1, 77)
    assert _rel(y, ref) < 1e-3


@pytest.mark.skipif(not TRITON_OK, reason="triton not importable")
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 1e-3), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.97, 1.0])
@pytest.mark.parametrize("dense_above", [2.0, 0.0, 0.6])
def test_dot_kernel_matches_float64(sparsity, dtype, tol, dense_above):
    """The tensor-core kernel (x in row 0 of a 16-row operand) against float64 at every sparsity, all channels
    off included, with chunks compacted (2.0), streamed masked (0.0) or chosen by density (0.6); fp32 inputs
    must not be rounded to tf32; a repeat call is bit-identical (fixed-order split-K reduction)."""
    g = torch.Generator().manual_seed(19)
    x = torch.randn(1, 300, generator=g).to(dtype)
    w = to_column_major((torch.randn(90, 300, generator=g) / 8).to(dtype))
    t = float(x.abs().max()) if sparsity == 1.0 else magnitude_threshold(x, sparsity)
    cfg = {"KERNEL": "dot", "SPLIT_K": 4, "BLOCK_M": 16, "BLOCK_N": 32, "num_warps": 1, "SUM_BLOCK": 32,
           "DENSE_ABOVE": dense_above, "PDL": "both", "STREAM_M": 32}  # PDL: no-op off Hopper
    y = sparse_linear(x, w, threshold=t, backend="triton", config=cfg)
    assert y.dtype == dtype
    assert torch.equal(y, sparse_linear(x, w, threshold=t, backend="triton", config=cfg))
    if sparsity == 1.0:
        assert torch.equal(y, torch.zeros_like(y))
    else:
        assert _rel(y, F.linear(x.double() * (x.abs() > t), w.double())) < tol


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_linear_strided_bias(backend):
    """A bias that is a strided view (a column of a matrix) gives F.linear's result on every backend."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(1, 64, generator=g)
    w = to_column_major(torch.randn(48, 64, generator=g))
    bias = torch.randn(48, 2, generator=g)[:, 0]
    assert not bias.is_contiguous()
    y = sparse_linear(x, w, bias, threshold=0.3, backend=backend)
    assert _rel(y, F.linear(x.double() * (x.abs() > 0.3), w.double(), bias.double())) < 1e-6
