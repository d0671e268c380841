"""Decode = float64 dense reference for every backend, top-k and CSR, power-of-two and other widths."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton kernels run in the CPU interpreter in CI

import pytest  # noqa: E402
import torch  # noqa: E402

from interp.errors import ConfigError  # noqa: E402
from interp.kernels import (  # noqa: E402
    SparseActs,
    decode,
    decode_reference,
    threshold_from_dense,
    topk_from_dense,
    triton_status,
)

TRITON_OK = triton_status("cpu")[0]
BACKENDS = ["embedding_bag", "dense"] + (["triton"] if TRITON_OK else [])


def _relerr(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref).norm() / ref.norm())


def _random_topk(n: int, d_sae: int, k: int, dtype=torch.float32, seed: int = 0) -> SparseActs:
    g = torch.Generator().manual_seed(seed)
    acts = torch.randn(n, d_sae, generator=g).relu() + 0.01  # no ties/zeros among the top-k
    return topk_from_dense(acts, k, value_dtype=dtype)


@pytest.mark.parametrize("d", [48, 64])
@pytest.mark.parametrize("backend", BACKENDS)
def test_decode_topk_matches_dense_fp32(d, backend):
    """Acceptance 1 (sparsify's test sizes): batch 2, d_sae 128, k 10, fp32 assert_close defaults."""
    s = _random_topk(2, 128, 10, seed=d)
    w = torch.randn(128, d, generator=torch.Generator().manual_seed(1))
    b = torch.randn(d, generator=torch.Generator().manual_seed(2))
    ref = decode_reference(s, w, b)
    out = decode(s, w, b, backend=backend)
    assert out.dtype == torch.float32 and out.shape == (2, d)
    torch.testing.assert_close(out, ref.float())


@pytest.mark.parametrize("d", [33, 64, 300])
@pytest.mark.parametrize("backend", BACKENDS)
def test_decode_csr_matches_dense_fp32(d, backend):
    """Variable-length rows (threshold CSR), including empty rows, against the float64 reference."""
    g = torch.Generator().manual_seed(d)
    acts = torch.randn(9, 200, generator=g).relu() * (torch.rand(9, 200, generator=g) < 0.08)
    acts[3] = 0  # an empty row decodes to zeros (+ bias)
    s = threshold_from_dense(acts, 0.0)
    assert int(s.row_lengths()[3]) == 0
    w = torch.randn(200, d, generator=g)
    out = decode(s, w, backend=backend)
    torch.testing.assert_close(out, decode_reference(s, w).float())


@pytest.mark.parametrize("backend", BACKENDS)
def test_decode_bf16(backend):
    """bf16 storage, fp32 accumulation in Triton: relative error within 2e-2 of the float64 reference."""
    n = 6 if backend == "triton" else 64  # the interpreter is slow; GPU gates run N = 8192 in benchmarks/
    s = _random_topk(n, 1024, 64, dtype=torch.bfloat16, seed=3)
    w = torch.randn(1024, 4096, generator=torch.Generator().manual_seed(4)).bfloat16()
    out = decode(s, w, backend=backend)
    ref = decode_reference(s, w)
    assert out.dtype == torch.bfloat16
    assert _relerr(out, ref) < 2e-2
    torch.testing.assert_close(out.double(), ref, atol=2e-2 * float(ref.abs().max()), rtol=2e-2)


@pytest.mark.skipif(not TRITON_OK, reason="triton not importable")
@pytest.mark.parametrize("config", [{"BLOCK_K": 4, "BLOCK_D": 16, "ROWS": 3},
                                    {"BLOCK_K": 32, "BLOCK_D": 128, "ROWS": 1}])
def test_decode_triton_tilings(config):
    """Every tiling (k split over steps, ragged d tiles, several rows per program) gives the same answer."""
    s = _random_topk(7, 300, 13, seed=5)
    w = torch.randn(300, 72, generator=torch.Generator().manual_seed(6))
    out = decode(s, w, backend="triton", config=config)
    torch.testing.assert_close(out, decode_reference(s, w).float())


def test_decode_uint16_ids_and_out_dtype():
    """uint16 ids (as read from disk) decode the same; out_dtype is honoured."""
    s = _random_topk(5, 500, 8, seed=7)
    w = torch.randn(500, 24)
    s16 = SparseActs(s.idx.to(torch.uint16), s.val, s.d_sae)
    for be in BACKENDS:
        out = decode(s16, w, backend=be, out_dtype=torch.float64)
        assert out.dtype == torch.float64
        torch.testing.assert_close(out, decode_reference(s, w), rtol=1e-5, atol=1e-5)


def test_decode_bad_input_is_typed():
    s = _random_topk(2, 64, 4)
    with pytest.raises(ConfigError):
        decode(s, torch.randn(65, 8))
    with pytest.raises(ConfigError):
        decode(s, torch.randn(64, 8), backend="cuda-magic")


def test_triton_missing_falls_back_with_message(monkeypatch):
    """Without Triton the dispatcher warns once and uses the torch backend, with the same result."""
    import interp.kernels.backend as be

    monkeypatch.setattr(be, "triton_status", lambda device: (False, "triton is not importable: test"))
    s = _random_topk(3, 64, 4, seed=8)
    w = torch.randn(64, 16)
    with pytest.warns(RuntimeWarning, match="Triton backend unavailable"):
        out = decode(s, w, backend="triton")
    torch.testing.assert_close(out, decode_reference(s, w).float())


@pytest.mark.parametrize("backend", BACKENDS)
def test_decode_strided_bias_and_crow(backend):
    """A bias that is a column of a matrix and a CSR offset array that is a strided view decode like contiguous ones
    (the Triton kernels index with unit strides, so the wrappers must make them contiguous)."""
    g = torch.Generator().manual_seed(5)
    dense = torch.randn(6, 40, generator=g).relu() * (torch.rand(6, 40, generator=g) < 0.3)
    csr = threshold_from_dense(dense, 0.0)
    crow2 = torch.stack([csr.crow, torch.zeros_like(csr.crow)], 1)[:, 0]  # same values, stride 2
    s = SparseActs(csr.idx, csr.val, 40, crow2)
    w = torch.randn(40, 24, generator=g)
    bias = torch.randn(24, 3, generator=g)[:, 1]
    assert not bias.is_contiguous() and not s.crow.is_contiguous()
    ref = decode_reference(csr, w, bias.contiguous())
    assert _relerr(decode(s, w, bias, backend=backend), ref) < 1e-6
