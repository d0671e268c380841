"""Column/row gathers are exact copies; the feature-major round trip is the identity; stats match brute force."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from interp.errors import ConfigError  # noqa: E402
from interp.kernels import (  # noqa: E402
    from_feature_major,
    gather_features,
    gather_tokens,
    latent_stats,
    threshold_from_dense,
    to_feature_major,
    topk_from_dense,
    triton_status,
)

TRITON_OK = triton_status("cpu")[0]
GATHER = ["torch", "dense"] + (["triton"] if TRITON_OK else [])
STATS = ["torch"] + (["triton"] if TRITON_OK else [])


def _caches(dtype=torch.bfloat16, seed=0):
    g = torch.Generator().manual_seed(seed)
    acts = (torch.randn(11, 300, generator=g) * (torch.rand(11, 300, generator=g) < 0.1)).relu()
    topk = topk_from_dense(torch.randn(11, 300, generator=g).relu(), 12, value_dtype=dtype)  # keeps some 0s
    csr = threshold_from_dense(acts, 0.0, value_dtype=dtype)
    return {"topk": topk, "csr": csr}


@pytest.mark.parametrize("fmt", ["topk", "csr"])
@pytest.mark.parametrize("backend", GATHER)
def test_gather_features_bit_exact(fmt, backend):
    """gather_features == dense[:, ids] bit for bit (unsorted, repeated and never-firing ids included)."""
    s = _caches()[fmt]
    dense = s.to_dense()
    ids = torch.tensor([299, 5, 17, 5, 0, 123, 42])
    out = gather_features(s, ids, backend=backend)
    assert out.dtype == s.val.dtype
    assert torch.equal(out.view(torch.int16), dense[:, ids].view(torch.int16))  # bitwise, not just ==


def test_gather_features_bad_ids():
    with pytest.raises(ConfigError):
        gather_features(_caches()["topk"], [300])


@pytest.mark.parametrize("fmt", ["topk", "csr"])
def test_gather_tokens(fmt):
    s = _caches()[fmt]
    rows = torch.tensor([7, 0, 7, 10])
    out = gather_tokens(s, rows)
    assert out.is_csr == s.is_csr
    assert torch.equal(out.to_dense(), s.to_dense()[rows])
    with pytest.raises(ConfigError):
        gather_tokens(s, [11])


@pytest.mark.parametrize("fmt", ["topk", "csr"])
def test_feature_major_round_trip_is_identity(fmt):
    s = _caches(torch.float16, seed=1)[fmt]
    fm = to_feature_major(s)
    # CSC invariants: per-latent segments sorted by token row, counts = column nonzero pattern of the stored ids
    lat = fm.latents()
    key = lat * s.n_rows + fm.rows
    assert bool((key[1:] >= key[:-1]).all())
    assert torch.equal(fm.counts(), torch.bincount(s.flat_idx().long(), minlength=s.d_sae))
    back = from_feature_major(fm)
    assert torch.equal(back.idx, s.idx.to(torch.int32)) and torch.equal(back.val, s.val)
    if s.is_csr:
        assert torch.equal(back.crow, s.crow)


@pytest.mark.parametrize("fmt", ["topk", "csr"])
@pytest.mark.parametrize("backend", STATS)
def test_latent_stats_match_brute_force(fmt, backend):
    s = _caches(torch.float32, seed=2)[fmt]
    dense = s.to_dense().double()
    st = latent_stats(s, n_top=3, backend=backend)
    nz = dense != 0
    count = nz.sum(0)
    assert torch.equal(st.count, count)
    torch.testing.assert_close(st.frequency, count.double() / s.n_rows)
    mean = (dense.sum(0) / count.double())
    fires = count > 0
    torch.testing.assert_close(st.mean[fires], mean[fires], rtol=1e-6, atol=1e-6)
    assert bool(st.mean[~fires].isnan().all()) and bool(torch.isinf(st.max[~fires]).all())
    mx = torch.where(nz, dense, torch.tensor(float("-inf"), dtype=torch.float64)).max(0).values
    torch.testing.assert_close(st.max[fires].double(), mx[fires])
    for j in torch.nonzero(fires).flatten().tolist():  # top examples = largest nonzero entries of the column
        vals, rows = torch.sort(dense[:, j], descending=True, stable=True)
        n = min(3, int(count[j]))
        torch.testing.assert_close(st.top_vals[j, :n].double(), vals[:n])
        assert set(st.top_rows[j, :n].tolist()) == set(rows[:n].tolist()) or n == 0
        assert bool((st.top_rows[j, n:] == -1).all())


@pytest.mark.parametrize("backend", GATHER)
def test_gather_features_strided_crow(backend):
    """A CSR whose offsets are a strided view gathers the same columns as its contiguous twin."""
    from interp.kernels import SparseActs

    s = _caches()["csr"]
    strided = SparseActs(s.idx, s.val, s.d_sae, torch.stack([s.crow, s.crow], 1)[:, 0])
    assert not strided.crow.is_contiguous()
    ids = torch.tensor([3, 250, 17])
    assert torch.equal(gather_features(strided, ids, backend=backend), s.to_dense()[:, ids])
