"""Latent-browser data against brute-force numpy recomputations from the dense latents of a synthetic cache.

Top-k contexts (ties: higher activation first, then lower row), histograms, quantile bins and samples, density, mean,
decoder-cosine neighbours, logit effects (W_dec · W_U), the SAE-error-norm correlation, the token windows and the
site's data chunks and search index."""

from __future__ import annotations

import numpy as np
import pytest

import browser_support as B
from interp.browser import build_browser, collect
from interp.browser.contexts import visible
from interp.browser.site import bucket, search_key
from interp.cache import open_cache
from interp.cache.sparse_formats import gather_sparse

K_TOP, N_BINS, NQ, S = 7, 16, 4, 3
MINSTD = 2_147_483_647


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    data = B.make_data()
    w = B.make_sae(root / "sae")
    cache = B.make_cache(root / "cache", data)
    site, ld, ex = build_browser(root / "sae", cache, root / "site", model=B.FakeModel(), tokenizer=B.vocab(),
                                 k_top=K_TOP, n_bins=N_BINS, n_quantiles=NQ, per_quantile=S, n_neighbours=5,
                                 n_logits=4, latent_chunk=16, index_chunk=20, device="cpu", return_data=True)
    return {"data": data, "w": w, "site": site, "ld": ld, "ex": ex}


def _priority(rows: np.ndarray, seed: int = 0) -> np.ndarray:
    x = (rows.astype(np.int64) + seed * 7919) % (MINSTD - 1) + 1
    for _ in range(2):
        x = (x * 48271) % MINSTD
    return x


def test_density_mean_range_exact(built):
    A, ld = built["data"]["A"], built["ld"]
    assert np.array_equal(ld.count, (A != 0).sum(0))
    assert np.array_equal(ld.density, (A != 0).sum(0) / B.N)
    fired = ld.count > 0
    np.testing.assert_allclose(ld.mean[fired], A.astype(np.float64).sum(0)[fired] / ld.count[fired], rtol=1e-12)
    assert np.isnan(ld.mean[B.D_SAE - 1]) and ld.count[B.D_SAE - 1] == 0
    lo, hi = B.value_range(A)
    assert np.array_equal(ld.lo, lo) and np.array_equal(ld.hi, hi)


def test_top_k_exact_with_ties(built):
    """Per latent: nonzero rows ordered by activation descending, ties by row ascending, first K_TOP."""
    A, ld = built["data"]["A"], built["ld"]
    n_ties = 0
    for j in range(B.D_SAE):
        rows = np.nonzero(A[:, j])[0]
        order = np.lexsort((rows, -A[rows, j]))[:K_TOP]
        want = np.full(K_TOP, -1)
        want[: len(order)] = rows[order]
        assert np.array_equal(ld.top_rows[j], want), j
        v = A[want[want >= 0], j]
        np.testing.assert_array_equal(ld.top_vals[j][: len(v)], v)
        n_ties += int((np.diff(v) == 0).sum())
    assert n_ties > 100  # the tie rule was exercised


def test_histogram_and_quantile_bins_exact(built):
    A, ld = built["data"]["A"], built["ld"]
    lo, hi = B.value_range(A)
    for j in range(B.D_SAE):
        v = A[A[:, j] != 0, j]
        h = (np.bincount(B.histogram_bins(v, lo[j], hi[j], N_BINS), minlength=N_BINS) if v.size
             else np.zeros(N_BINS, int))
        assert np.array_equal(ld.hist[j], h), j
        if not v.size:
            continue
        # quantile bin of a histogram bin: which n_q-quantile the values below that bin reach
        for b in range(N_BINS):
            below = h[:b].sum()
            q = ld.qbin[j, b]
            assert q == NQ - 1 or below * NQ < (q + 1) * len(v)
            assert below * NQ >= q * len(v)


def test_quantile_samples_are_the_bottom_priority_rows(built):
    """Each (latent, quantile) keeps the S rows of smallest priority among its rows in that quantile bin."""
    A, ld = built["data"]["A"], built["ld"]
    lo, hi = B.value_range(A)
    for j in range(B.D_SAE):
        rows = np.nonzero(A[:, j])[0]
        q_of = ld.qbin[j][B.histogram_bins(A[rows, j], lo[j], hi[j], N_BINS)] if rows.size else np.zeros(0, int)
        for q in range(NQ):
            cand = rows[q_of == q]
            want = cand[np.argsort(_priority(cand))][:S]
            got = ld.sample_rows[j, q]
            assert np.array_equal(got[got >= 0], want), (j, q)
            np.testing.assert_array_equal(ld.sample_vals[j, q][: len(want)], A[want, j])


def test_neighbours_and_logit_effects(built):
    W, ex = built["w"]["W_dec"].astype(np.float64), built["ex"]
    Wn = W / np.linalg.norm(W, axis=1, keepdims=True)
    cos = Wn @ Wn.T
    np.fill_diagonal(cos, -np.inf)
    ids, sims = ex.neighbours
    for j in range(B.D_SAE):
        want = np.argsort(-cos[j], kind="stable")[:5]
        np.testing.assert_allclose(sims[j], cos[j, want], atol=1e-5)
        gaps = np.diff(cos[j, np.argsort(-cos[j])[:6]])
        if np.all(np.abs(gaps) > 1e-5):  # no near-ties: the ids themselves must agree
            assert np.array_equal(ids[j], want), j
    assert ids[2, 0] == 7 and ids[7, 0] == 2 and sims[2, 0] > 0.99
    eff = W @ B.FakeModel().W_U.numpy().astype(np.float64)
    for j in range(B.D_SAE):
        np.testing.assert_allclose(ex.logits["pos"][j], np.sort(eff[j])[::-1][:4], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ex.logits["neg"][j], np.sort(eff[j])[:4], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(eff[j, ex.logits["pos_ids"][j]], ex.logits["pos"][j], rtol=1e-5, atol=1e-5)


def test_error_norm_correlation(built):
    A, X, w, ld = built["data"]["A"], built["data"]["X"], built["w"], built["ld"]
    err = np.linalg.norm(X.astype(np.float64) - (A.astype(np.float64) @ w["W_dec"] + w["b_dec"]), axis=1)
    for j in range(B.D_SAE - 1):
        np.testing.assert_allclose(ld.err_corr[j], np.corrcoef(A[:, j], err)[0, 1], atol=1e-5)
    assert np.isnan(ld.err_corr[B.D_SAE - 1])  # never fires: no variance


def test_site_chunks_match_and_contexts_are_the_token_windows(built):
    """The written chunks carry the same numbers; every context is the window of its row within its sequence."""
    site, ld, data = built["site"], built["ld"], built["data"]
    A, tok = data["A"], data["tokens"]
    names = [visible(t) for t in B.vocab()]
    _, meta = B.read_chunk(site / "data" / "meta.js")
    assert meta["n_latents"] == B.D_SAE and meta["has_err"] and meta["n_index_chunks"] == 3
    index = {}
    for c in range(3):
        _, cols = B.read_chunk(site / "data" / "index" / f"c{c:05d}.js")
        index.update({i: (d, m) for i, d, m in zip(cols["id"], cols["density"], cols["mean"])})
    assert len(index) == B.D_SAE and all(abs(index[j][0] - ld.density[j]) < 1e-8 for j in index)
    search: dict[str, set[int]] = {}
    for c in range(3):
        _, recs = B.read_chunk(site / "data" / "latents" / f"c{c:05d}.js")
        for sj, rec in recs.items():
            j = int(sj)
            assert [x["row"] for x in rec["top"]] == [r for r in ld.top_rows[j] if r >= 0]
            assert rec["hist"]["counts"] == ld.hist[j].tolist()
            for x in rec["top"] + [s for q in rec["quantiles"] for s in q["samples"]]:
                r = x["row"]
                win = [i for i in range(r - 8, r + 5) if 0 <= i < B.N and tok[i, 1] == tok[r, 1]]
                assert x["t"] == [names[tok[i, 0]] for i in win]
                assert x["a"] == [round(float(A[i, j]), 4) for i in win] and x["a"][x["c"]] == A[r, j]
                assert (x["seq"], x["pos"]) == (tok[r, 1], tok[r, 2])
            for x in rec["top"]:
                search.setdefault(search_key(x["t"][x["c"]]), set()).add(j)
    assert search["she"] >= {B.PLANTED}
    for key, lats in search.items():
        _, entries = B.read_chunk(site / "data" / "search" / f"b{bucket(key):03d}.js")
        assert set(entries[key]) == lats
    # the planted latent: its top contexts are all " she"
    rows = ld.top_rows[B.PLANTED]
    assert (tok[rows[rows >= 0], 0] == B.SHE).all()


def test_visible_neutralises_controls():
    assert visible("a\u202eb\nc\u200bd") == "a\u27e8U+202E\u27e9b\u23cec\u27e8U+200B\u27e9d"
    assert visible("<script>") == "<script>"  # markup stays text: pages insert it with textContent


def test_no_dense_hook_gives_a_note(tmp_path):
    data = B.make_data(seed=1)
    B.make_sae(tmp_path / "sae")
    cache = B.make_cache(tmp_path / "cache", data, dense=False)
    _, ld, ex = build_browser(tmp_path / "sae", cache, tmp_path / "site", model=False, tokenizer=B.vocab(),
                              k_top=3, n_bins=8, n_quantiles=2, per_quantile=1, device="cpu", return_data=True)
    assert ld.err_corr is None and "densely" in ex.notes["err"] and "skipped" in ex.notes["logit"]
    _, meta = B.read_chunk(tmp_path / "site" / "data" / "meta.js")
    assert not meta["has_err"] and meta["err_note"] == ex.notes["err"]


def test_csr_cache_gives_the_same_data(built, tmp_path):
    """The same latents stored as CSR (threshold format) give the same statistics, top-k and samples."""
    reader = open_cache(B.make_cache(tmp_path / "csr", built["data"], dense=False, shard_rows=300, csr=True))
    assert reader.spec(B.HOOK_LAT)["format"] == "threshold"
    ld = collect(reader, B.HOOK_LAT, k_top=K_TOP, n_bins=N_BINS, n_quantiles=NQ, per_quantile=S, device="cpu")
    ref = built["ld"]
    for name in ("count", "total", "lo", "hi", "top_rows", "top_vals", "hist", "qbin", "sample_rows"):
        assert np.array_equal(getattr(ld, name), getattr(ref, name)), name


def test_gather_sparse_and_token_rows_read_arbitrary_rows(built, tmp_path):
    """Rows in any order, with repeats, across shards: the same as densifying and indexing."""
    reader = open_cache(built["site"].parent / "cache")
    rows = np.array([2999, 0, 501, 501, 1499, 7, 2500])
    dense = gather_sparse(reader, B.HOOK_LAT, rows).to_dense().float().numpy()
    np.testing.assert_array_equal(dense, built["data"]["A"][rows])
    np.testing.assert_array_equal(reader.token_rows(rows), built["data"]["tokens"][rows])
    csr = open_cache(B.make_cache(tmp_path / "csr", built["data"], dense=False, csr=True))
    np.testing.assert_array_equal(gather_sparse(csr, B.HOOK_LAT, rows).to_dense().float().numpy(),
                                  built["data"]["A"][rows])
