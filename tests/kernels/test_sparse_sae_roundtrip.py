"""A sae-lens TopK SAE's latents cached sparsely decode to the same reconstruction and FVU (acceptance 2)."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

from interp.cache.formats import get as get_format  # noqa: E402
from interp.cache.sparse_formats import sparse_rows, sparse_spec  # noqa: E402
from interp.kernels import decode, encode_topk, topk_from_dense, triton_status  # noqa: E402


def _fvu(x: torch.Tensor, xhat: torch.Tensor) -> float:
    """Fraction of variance unexplained: Σ(x̂ − x)² / Σ(x − mean)²."""
    x, xhat = x.double(), xhat.double()
    return float(((xhat - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def test_topk_sae_sparse_cache_round_trip():
    from sae_lens import TopKSAE, TopKSAEConfig

    torch.manual_seed(0)
    d, d_sae, k = 128, 1024, 16
    sae = TopKSAE(TopKSAEConfig(d_in=d, d_sae=d_sae, k=k))
    with torch.no_grad():  # random but non-trivial weights and biases
        sae.W_enc.normal_(0, d ** -0.5)
        sae.W_dec.copy_(sae.W_enc.T / sae.W_enc.T.norm(dim=1, keepdim=True))
        sae.b_enc.normal_(0, 0.1)
        sae.b_dec.normal_(0, 0.1)
    x = torch.randn(512, d) @ torch.randn(d, d) / d ** 0.5  # correlated "residuals"
    with torch.no_grad():
        feats = sae.encode(x)
        xhat_dense = sae.decode(feats)
        assert int((feats != 0).sum(1).max()) <= k
        s = topk_from_dense(feats, k, value_dtype=torch.bfloat16)
        # interp's own encoder agrees with sae-lens (same top-k set and ReLU)
        own = encode_topk(x, sae.W_enc, sae.b_enc, k, b_dec=sae.b_dec)
        torch.testing.assert_close(own.to_dense(), feats)

        # the cache's top-k format, as extract writes a shard of these latents (SAE encoding ran before it)
        spec = sparse_spec("topk", d=d_sae, k=k, by="value")
        arrays = get_format("topk").encode(feats, spec)
        back = sparse_rows(arrays, spec, 0, len(feats))
        assert torch.equal(back.to_dense(), s.to_dense())  # the same top-k set and bf16 values as topk_from_dense
        backends = ["embedding_bag", "dense"] + (["triton"] if triton_status("cpu")[0] else [])
        for be in backends:
            rows = slice(None) if be != "triton" else slice(0, 16)  # interpreter: keep it small
            xhat = decode(SparseActsRows(back, rows), sae.W_dec, sae.b_dec, backend=be)
            ref = xhat_dense[rows]
            err = (xhat - ref).abs().max(1).values
            assert bool((err <= 1e-2 * x[rows].norm(dim=1)).all()), be
            assert abs(_fvu(x[rows], xhat) - _fvu(x[rows], ref)) < 5e-4, be  # equal to 3 decimals

    dense_bytes = 512 * d_sae * 2  # bf16 dense latents
    ratio = dense_bytes / sum(a.nbytes for a in arrays.values())
    assert ratio >= d_sae * 2 / (k * 6)  # ≥ 21.3×; uint16 ids give 32× (the .npy header is not counted)
    assert ratio == 32


def SparseActsRows(s, rows):  # noqa: N802 - tiny helper
    """Row slice of top-k latents."""
    from interp.kernels import SparseActs

    return SparseActs(s.idx[rows], s.val[rows], s.d_sae)
