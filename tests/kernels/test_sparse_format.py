"""Sparse shard files round-trip exactly, pick uint16 ids when they fit, and detect corruption."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from interp.cache.sparse import (  # noqa: E402
    index_dtype_for,
    read_feature_major_shard,
    read_sparse_shard,
    sparse_shard_meta,
    storage_bytes,
    write_csr_shard,
    write_feature_major_shard,
    write_sparse_shard,
    write_topk_shard,
)
from interp.errors import CacheCorruptError, CacheError, ConfigError  # noqa: E402
from interp.kernels import from_feature_major, threshold_from_dense, to_feature_major, topk_from_dense  # noqa: E402


def test_topk_shard_round_trip_uint16(tmp_path):
    s = topk_from_dense(torch.randn(20, 1000).relu(), 8, value_dtype=torch.bfloat16)
    rec = write_topk_shard(tmp_path / "a.safetensors", s.idx, s.val, 1000)
    assert rec["format"] == "interp.sparse.topk" and rec["n_rows"] == 20 and rec["nnz"] == 160
    meta = sparse_shard_meta(tmp_path / "a.safetensors")
    assert meta["index_dtype"] == "uint16" and meta["value_dtype"] == "bfloat16" and meta["k"] == 8
    back = read_sparse_shard(tmp_path / "a.safetensors", rec)
    assert back.idx.dtype == torch.int32 and torch.equal(back.idx, s.idx) and torch.equal(back.val, s.val)
    # 4 bytes per entry + a small header
    assert rec["bytes"] < 160 * 4 + 1024


def test_large_dictionary_uses_int32(tmp_path):
    assert index_dtype_for(65536) == torch.uint16 and index_dtype_for(65537) == torch.int32
    s = topk_from_dense(torch.randn(3, 70000), 5)
    rec = write_sparse_shard(tmp_path / "b.safetensors", s, value_dtype="fp16")
    back = read_sparse_shard(tmp_path / "b.safetensors", rec)
    assert sparse_shard_meta(tmp_path / "b.safetensors")["index_dtype"] == "int32"
    assert torch.equal(back.idx, s.idx) and torch.equal(back.val, s.val.half())
    with pytest.raises(ConfigError):
        write_sparse_shard(tmp_path / "c.safetensors", s, index_dtype=torch.uint16)


def test_csr_shard_records_threshold(tmp_path):
    acts = torch.randn(15, 300)
    s = threshold_from_dense(acts, 1.5, value_dtype=torch.float16)
    rec = write_csr_shard(tmp_path / "c.safetensors", s.crow, s.idx, s.val, 300, threshold=1.5)
    assert sparse_shard_meta(tmp_path / "c.safetensors")["threshold"] == 1.5
    back = read_sparse_shard(tmp_path / "c.safetensors", rec)
    assert back.is_csr and torch.equal(back.crow, s.crow) and torch.equal(back.to_dense(), s.to_dense())


def test_feature_major_shard(tmp_path):
    s = threshold_from_dense(torch.randn(10, 64).relu(), 0.5)
    rec = write_feature_major_shard(tmp_path / "f.safetensors", to_feature_major(s))
    fm = read_feature_major_shard(tmp_path / "f.safetensors", rec)
    back = from_feature_major(fm)
    assert torch.equal(back.idx, s.idx) and torch.equal(back.val, s.val) and torch.equal(back.crow, s.crow)
    with pytest.raises(CacheError):
        read_sparse_shard(tmp_path / "f.safetensors")


def test_corruption_and_truncation_detected(tmp_path):
    s = topk_from_dense(torch.randn(4, 100), 3)
    p = tmp_path / "x.safetensors"
    rec = write_sparse_shard(p, s)
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(CacheCorruptError, match="sha256"):
        read_sparse_shard(p, rec)
    p.write_bytes(bytes(data[:-4]))
    with pytest.raises(CacheCorruptError, match="bytes"):
        read_sparse_shard(p, rec)
    with pytest.raises(CacheCorruptError):
        read_sparse_shard(tmp_path / "missing.safetensors")


def test_invalid_ids_rejected_on_write(tmp_path):
    s = topk_from_dense(torch.randn(4, 100), 3)
    s.d_sae = 50
    with pytest.raises(ConfigError, match="outside"):
        write_sparse_shard(tmp_path / "y.safetensors", s)


def test_storage_bytes():
    s = topk_from_dense(torch.randn(10, 1024), 16)
    assert storage_bytes(s) == 10 * 16 * 4  # uint16 id + bf16 value
    assert storage_bytes(s, index_dtype=torch.int32) == 10 * 16 * 6
