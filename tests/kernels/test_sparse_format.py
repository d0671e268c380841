"""The cache's sparse formats round-trip exactly and pick uint16 ids when they fit; feature-major index files
round-trip and detect corruption."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from interp.cache.formats import get as get_format  # noqa: E402
from interp.cache.sparse import read_feature_major_shard, write_feature_major_shard  # noqa: E402
from interp.cache.sparse_formats import sparse_rows, sparse_spec  # noqa: E402
from interp.errors import CacheCorruptError, CacheError  # noqa: E402
from interp.kernels import from_feature_major, threshold_from_dense, to_feature_major, topk_from_dense  # noqa: E402


def test_topk_format_round_trip_uint16():
    acts = torch.randn(20, 1000).relu()
    spec = sparse_spec("topk", d=1000, k=8, by="value")
    arrays = get_format("topk").encode(acts, spec)
    assert arrays["idx"].dtype == np.uint16 and arrays["idx"].shape == (20, 8)
    ref = topk_from_dense(acts, 8, value_dtype=torch.bfloat16)  # the kernels' own top-k, independently
    back = sparse_rows(arrays, spec, 0, 20)
    assert back.idx.dtype == torch.int32 and torch.equal(back.to_dense(), ref.to_dense())
    assert sum(a.nbytes for a in arrays.values()) == 160 * 4  # 2-byte id + 2-byte bf16 value per entry


@pytest.mark.parametrize("kind", ["topk", "threshold"])
def test_batches_selected_apart_pack_into_the_whole_shard(kind):
    """Extraction selects each batch on the device and packs a shard's batches on the host: for any split of the
    rows the stored arrays equal those of the whole shard, and densify to the kept entries of a numpy reference."""
    from interp.cache.sparse_formats import pack

    g = torch.Generator().manual_seed(3)
    acts = torch.randn(37, 300, generator=g)
    acts[5] = 0.0  # a row with nothing above the threshold
    spec = sparse_spec(kind, d=300, k=6, threshold=1.5, by="abs")
    fmt = get_format(kind)
    whole = fmt.encode(acts, spec)
    for cuts in ([37], [1, 36], [5, 1, 20, 11], [12, 25]):
        parts, start = [], 0
        for n in cuts:
            parts.append(fmt.select(acts[start: start + n], spec))
            start += n
        got = pack(parts, spec)
        assert set(got) == set(whole) and all(np.array_equal(got[r], whole[r]) for r in whole), cuts
    a = acts.numpy()
    if kind == "topk":
        keep = np.zeros_like(a, dtype=bool)
        np.put_along_axis(keep, np.argsort(-np.abs(a), axis=1)[:, :6], True, axis=1)
    else:
        keep = np.abs(a) > 1.5
    want = torch.from_numpy(np.where(keep, a, 0.0)).bfloat16()
    assert torch.equal(sparse_rows(whole, spec, 0, 37).to_dense(), want)


def test_large_dictionary_uses_int32():
    assert sparse_spec("topk", d=65536, k=1)["index_dtype"] == "uint16"
    assert sparse_spec("topk", d=65537, k=1)["index_dtype"] == "int32"
    acts = torch.randn(3, 70000)
    spec = sparse_spec("topk", d=70000, k=5, value_dtype="float16")
    arrays = get_format("topk").encode(acts, spec)
    assert arrays["idx"].dtype == np.int32
    ref = topk_from_dense(acts.abs(), 5)  # by magnitude: the ids of the 5 largest |a|
    back = sparse_rows(arrays, spec, 0, 3)
    assert torch.equal(back.idx.sort(1).values, ref.idx.sort(1).values)
    assert torch.equal(back.to_dense(), torch.zeros_like(acts).scatter(1, ref.idx.long(),
                                                                           acts.gather(1, ref.idx.long())).half())


def test_csr_format_round_trip():
    acts = torch.randn(15, 300)
    spec = sparse_spec("threshold", d=300, threshold=1.5, value_dtype="float16")
    arrays = get_format("threshold").encode(acts, spec)
    back = sparse_rows(arrays, spec, 0, 15)
    ref = torch.where(acts.abs() > 1.5, acts, 0).half()
    assert back.is_csr and torch.equal(back.to_dense(), ref)
    assert torch.equal(get_format("threshold").decode(arrays, spec), ref)


def test_feature_major_shard(tmp_path):
    s = threshold_from_dense(torch.randn(10, 64).relu(), 0.5)
    rec = write_feature_major_shard(tmp_path / "f.safetensors", to_feature_major(s))
    fm = read_feature_major_shard(tmp_path / "f.safetensors", rec)
    back = from_feature_major(fm)
    assert torch.equal(back.idx, s.idx) and torch.equal(back.val, s.val) and torch.equal(back.crow, s.crow)


def test_corruption_and_truncation_detected(tmp_path):
    s = threshold_from_dense(torch.randn(4, 100).relu(), 0.5)
    p = tmp_path / "x.safetensors"
    rec = write_feature_major_shard(p, to_feature_major(s))
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(CacheCorruptError, match="does not match its xxh3_128"):
        read_feature_major_shard(p, rec)
    p.write_bytes(bytes(data[:-4]))
    with pytest.raises(CacheCorruptError, match="bytes"):
        read_feature_major_shard(p, rec)
    with pytest.raises(CacheCorruptError):
        read_feature_major_shard(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CacheError):
        read_feature_major_shard(tmp_path / "junk.safetensors")
