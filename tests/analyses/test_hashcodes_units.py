"""Unit checks of the hash-code maths against brute force, scikit-learn and hand-computed cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from analyses.hashcodes.categorize import cluster_accuracy, hamming_distances, hamming_knn_predict, knn_predict
from analyses.hashcodes.codes import (
    activation_codes,
    drop_constant,
    pack,
    redundancy_ratio,
    region_labels,
    region_occupancy,
    relu_like_modules,
)
from interp.errors import ConfigError, InterpError


def test_redundancy_ratio_issue_example():
    assert redundancy_ratio(np.array([[0, 1], [0, 1], [1, 0], [1, 1]])) == 0.25


def test_redundancy_ratio_matches_set_count_on_random_codes():
    rng = np.random.default_rng(0)
    for bits in (1, 5, 63, 64, 65, 200):
        c = rng.integers(0, 2, (300, bits), dtype=np.uint8)
        c[100:150] = c[:50]  # planted duplicates
        n_unique = len({tuple(r) for r in c})
        assert redundancy_ratio(c) == pytest.approx((300 - n_unique) / 300)
        assert redundancy_ratio(pack(c)) == redundancy_ratio(c)


def test_region_occupancy_and_labels():
    c = np.array([[0, 1], [0, 1], [1, 0], [1, 1], [0, 1], [1, 0]])
    assert region_occupancy(c) == {1: 1, 2: 1, 3: 1}
    lab = region_labels(c)
    assert lab[0] == lab[1] == lab[4] and lab[2] == lab[5] and len(set(lab)) == 3


def test_greedy_cluster_accuracy_issue_example_and_hungarian():
    assert cluster_accuracy([1, 1, 0, 0], [0, 0, 1, 1]) == 1.0
    # two clusters on one label: greedy may reuse a label, Hungarian may not
    assert cluster_accuracy([0, 1, 2, 2], [0, 0, 1, 1], "greedy") == 1.0
    assert cluster_accuracy([0, 1, 2, 2], [0, 0, 1, 1], "hungarian") == 0.75


def _greedy_reference(cluster, label):
    """The reference's compute_clustering_accuracy, ported loop for loop (10 clusters, labels 0..9)."""
    c = np.array(cluster).copy()
    for i in range(10):
        errs = []
        for j in range(10):
            rc = c.copy()
            rc[rc == i] = j
            errs.append(np.count_nonzero(label - rc))
        c[c == i] = 10 + int(np.argmin(errs))
    c = c - 10
    return 1 - np.count_nonzero(label - c) / len(label)


def test_cluster_accuracy_against_reference_loop_and_brute_force_hungarian():
    rng = np.random.default_rng(1)
    for _ in range(20):
        y = rng.integers(0, 10, 200)
        pred = np.where(rng.random(200) < 0.5, y, rng.integers(0, 10, 200))
        pred = rng.permutation(10)[pred]
        assert cluster_accuracy(pred, y) == pytest.approx(_greedy_reference(pred, y))
    y = rng.integers(0, 4, 60)
    pred = rng.integers(0, 4, 60)
    best = max(np.mean(np.array(p)[pred] == y) for p in itertools.permutations(range(4)))
    assert cluster_accuracy(pred, y, "hungarian") == pytest.approx(best)
    with pytest.raises(ConfigError):
        cluster_accuracy(pred, y, "nope")


def test_constant_units_dropped_union_and_train_only():
    codes = np.array([[1, 0, 1], [1, 1, 0], [1, 0, 0]])  # unit 0 always on
    tr, _, keep = drop_constant(codes)
    assert tr.shape[1] == 2 and keep.tolist() == [False, True, True]
    test = np.array([[0, 0, 1]])  # unit 0 varies only through the test set
    tr_u, te_u, keep_u = drop_constant(codes, test, fit_on="union")
    tr_t, te_t, keep_t = drop_constant(codes, test, fit_on="train")
    assert keep_u.tolist() == [True, True, True] and keep_t.tolist() == [False, True, True]
    assert te_t.shape == (1, 2)
    with pytest.raises(ConfigError):
        drop_constant(codes, test, fit_on="test")


def test_pack_roundtrip_and_hamming_distances_brute_force():
    rng = np.random.default_rng(2)
    for bits in (1, 8, 64, 100, 1024):
        a = rng.integers(0, 2, (37, bits), dtype=np.uint8)
        b = rng.integers(0, 2, (53, bits), dtype=np.uint8)
        pa, pb = pack(a), pack(b)
        assert np.array_equal(pa.unpack(), a) and pa.nbytes == 37 * 8 * -(-bits // 64)
        brute = (a[:, None, :] != b[None, :, :]).sum(-1)
        assert np.array_equal(hamming_distances(pa, pb), brute)


def _clustered_codes(rng, bits, n, noise):
    proto = rng.integers(0, 2, (10, bits), dtype=np.uint8)
    y = rng.integers(0, 10, n)
    return (proto[y] ^ (rng.random((n, bits)) < noise)).astype(np.uint8), y, proto


@pytest.mark.parametrize("bits", [1, 3, 7, 16, 20, 64, 65, 300])
def test_packed_knn_equals_sklearn_hamming_brute_exactly(bits):
    """Tie-heavy codes (few bits, many equal distances): predictions must match scikit-learn's exactly."""
    rng = np.random.default_rng(bits)
    X, y, proto = _clustered_codes(rng, bits, 700, 0.3)
    yq = rng.integers(0, 10, 300)
    Q = (proto[yq] ^ (rng.random((300, bits)) < 0.3)).astype(np.uint8)
    ref = KNeighborsClassifier(n_neighbors=9, metric="hamming", algorithm="brute").fit(X, y).predict(Q)
    assert np.array_equal(hamming_knn_predict(pack(X), y, pack(Q), k=9), ref)
    assert np.array_equal(knn_predict(pack(X), y, pack(Q), k=9), ref)  # the default: brute at every length
    # 'auto' as the reference ran it: scikit-learn picks brute force above 15 features, a ball tree below
    auto = KNeighborsClassifier(n_neighbors=9, metric="hamming").fit(X, y).predict(Q)
    assert np.array_equal(knn_predict(pack(X), y, pack(Q), k=9, algorithm="auto"), auto)
    if bits > 15:
        assert np.array_equal(hamming_knn_predict(X, y, Q, k=9), auto)


def test_packed_knn_string_labels_and_k1_and_errors():
    rng = np.random.default_rng(5)
    X, y, _ = _clustered_codes(rng, 40, 200, 0.1)
    names = np.array(list("abcdefghij"))[y]
    ref = KNeighborsClassifier(n_neighbors=1, metric="hamming").fit(X, names).predict(X[:50])
    assert np.array_equal(hamming_knn_predict(X, names, X[:50], k=1), ref)
    with pytest.raises(ConfigError):
        hamming_knn_predict(X, y, X[:5], k=0)
    with pytest.raises(ConfigError):
        hamming_knn_predict(X, y[:10], X[:5], k=3)
    with pytest.raises(ConfigError):
        hamming_knn_predict(X, y, X[:5, :30], k=3)


def test_activation_codes_from_module_hooks_match_manual_forward():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 5), torch.nn.GELU(),
                                torch.nn.Linear(5, 3))
    assert relu_like_modules(model) == ["1", "3"]
    X, Xt = torch.randn(50, 6), torch.randn(20, 6)
    tr, te, keep = activation_codes(model, X, X_test=Xt)
    with torch.no_grad():
        def manual(x):
            h1 = model[1](model[0](x))
            h2 = model[3](model[2](h1))
            return np.concatenate([(h1 > 0).numpy(), (h2 > 0).numpy()], axis=1).astype(np.uint8)
    full = np.concatenate([manual(X), manual(Xt)])
    expect_keep = full.any(0) & ~full.all(0)
    assert np.array_equal(keep, expect_keep)
    assert np.array_equal(tr, manual(X)[:, expect_keep]) and np.array_equal(te, manual(Xt)[:, expect_keep])
    with pytest.raises(ConfigError):
        relu_like_modules(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_gelu_hook_post_threshold_zero_is_preactivation_sign():
    """Transformer MLP codes: hook_post > 0 must equal hook_pre > 0 (GELU(x) > 0 iff x > 0)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from analyses.hashcodes.lm import last_token_codes, token_codes

    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, d_vocab=50, n_ctx=16,
                                  act_fn="gelu", normalization_type="LN", seed=0, device="cpu")
    model = HookedTransformer(cfg).eval()
    toks = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(0))
    codes = token_codes(model, toks, "blocks.*.mlp.hook_post")
    _, cache = model.run_with_cache(toks, names_filter=lambda n: n.endswith("mlp.hook_pre"))
    for layer in range(2):
        pre = cache[f"blocks.{layer}.mlp.hook_pre"].reshape(-1, 64)
        assert np.array_equal(codes[f"blocks.{layer}.mlp.hook_post"], (pre > 0).numpy().astype(np.uint8))
    # last-token codes of ragged prompts (right-padded, sorted batches) equal one-by-one forward passes
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9], [10], [11, 12, 13, 14]]
    batched = last_token_codes(model, prompts, batch_size=3)
    for i, p in enumerate(prompts):
        single = token_codes(model, torch.tensor([p]))
        row = np.concatenate([single[h][-1] for h in single])
        assert np.array_equal(batched[i], row)
    with pytest.raises(InterpError):
        last_token_codes(model, [[1], []])


def test_popcount_byte_table_fallback_matches_bit_count():
    from analyses.hashcodes import categorize

    w = np.random.default_rng(0).integers(0, 2**63, (5, 7), dtype=np.uint64)
    out = np.empty((5, 7), dtype=np.uint8)
    table = categorize._BYTE_POPCOUNT[w.view(np.uint8)].reshape(5, 7, 8).sum(-1)
    brute = np.array([[bin(int(x)).count("1") for x in row] for row in w])
    assert np.array_equal(table, brute) and np.array_equal(categorize._popcount64(w, out), brute)


def test_tie_aware_knn_hand_cases_and_order_invariance():
    """Fractional votes at the k-th distance, by hand; and no dependence on the training order (the point)."""
    from analyses.hashcodes.categorize import tie_aware_knn_accuracy

    test = pack(np.array([[0, 0, 0, 0]]))
    # four training codes at distance 0, labels 0,0,1,1, k=3: 3/4 vote each -> 1.5 vs 1.5, a tie -> 1/2
    four = pack(np.zeros((4, 4), dtype=np.uint8))
    assert tie_aware_knn_accuracy(four, np.array([0, 0, 1, 1]), test, np.array([0]), k=3) == 0.5
    # one closer neighbour (label 1) and three at the k-th distance (labels 0, 0, 1), k=3: the two remaining votes
    # are shared by three -> label 0: 4/3, label 1: 1 + 2/3 -> predicts 1
    codes = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 1, 1, 1]], dtype=np.uint8)
    y = np.array([1, 0, 0, 1, 0])
    assert tie_aware_knn_accuracy(pack(codes), y, test, np.array([1]), k=3) == 1.0
    assert tie_aware_knn_accuracy(pack(codes), y, test, np.array([0]), k=3) == 0.0
    # without ties it is the plain k-NN accuracy; with ties it does not move when the training rows are permuted
    rng = np.random.default_rng(0)
    tr, te = rng.integers(0, 2, (300, 3)).astype(np.uint8), rng.integers(0, 2, (50, 3)).astype(np.uint8)
    y_tr, y_te = rng.integers(0, 4, 300), rng.integers(0, 4, 50)
    base = tie_aware_knn_accuracy(pack(tr), y_tr, pack(te), y_te, k=9)
    for seed in range(3):
        perm = np.random.default_rng(seed + 1).permutation(300)
        assert tie_aware_knn_accuracy(pack(tr[perm]), y_tr[perm], pack(te), y_te, k=9) == pytest.approx(base)
    wide_tr, wide_te = rng.integers(0, 2, (60, 40)).astype(np.uint8), rng.integers(0, 2, (20, 40)).astype(np.uint8)
    d = (wide_te[:, None, :] != wide_tr[None, :, :]).sum(-1)
    k = 1
    unique = np.sort(d, 1)[:, 0] < np.sort(d, 1)[:, 1]  # no tie at the nearest distance
    y_w, y_t = rng.integers(0, 3, 60), rng.integers(0, 3, 20)
    plain = (y_w[d.argmin(1)] == y_t)[unique].mean()
    sel = np.where(unique)[0]
    assert tie_aware_knn_accuracy(pack(wide_tr), y_w, pack(wide_te[sel]), y_t[sel], k=k) == pytest.approx(plain)
