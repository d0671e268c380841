"""Categorisation of neural codes: K-means accuracy, Hamming k-NN on packed codes, one-vs-one logistic regression.

Settings follow the reference (LeavesLei/activation-code, run_*_encoding_properties.py): KMeans(10, random_state=9,
n_init=10) with the greedy cluster -> label mapping of `compute_clustering_accuracy`; KNeighborsClassifier(9,
metric='hamming') fitted on train codes; OneVsOneClassifier(LogisticRegression(random_state=9)).
"""

from __future__ import annotations

import warnings

import numpy as np

from analyses.hashcodes.codes import PackedCodes, pack
from interp.errors import ConfigError


def _contingency(pred: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts `[n_clusters, n_labels]` of (cluster, label) pairs, with the sorted cluster ids and labels."""
    pred, y = np.asarray(pred).ravel(), np.asarray(y).ravel()
    if pred.shape != y.shape or pred.size == 0:
        raise ConfigError(f"pred and labels must be equal-length non-empty vectors, got {pred.shape} and {y.shape}",
                          hint="pass one cluster id per labelled sample")
    clusters, ci = np.unique(pred, return_inverse=True)
    labels, li = np.unique(y, return_inverse=True)
    m = np.zeros((clusters.size, labels.size), dtype=np.int64)
    np.add.at(m, (ci.ravel(), li.ravel()), 1)
    return m, clusters, labels


def cluster_accuracy(pred: np.ndarray, y: np.ndarray, mapping: str = "greedy") -> float:
    """Accuracy of clusters mapped to labels: 'greedy' (reference-exact) or 'hungarian' (one-to-one).

    greedy: each cluster, in order, takes the label minimising mismatches, i.e. its majority label (smallest
    label on ties); several clusters may share a label, so greedy >= hungarian.
    hungarian: the one-to-one assignment maximising matches (scipy linear_sum_assignment).
    """
    m, _, _ = _contingency(pred, y)
    if mapping == "greedy":
        return float(m.max(axis=1).sum() / m.sum())
    if mapping == "hungarian":
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(-m)
        return float(m[rows, cols].sum() / m.sum())
    raise ConfigError(f"unknown cluster mapping '{mapping}'", hint="use 'greedy' or 'hungarian'")


_BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount64(words: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Per-element popcount of uint64 words into uint8 `out` (np.bitwise_count on numpy >= 2, else a byte table)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words, out=out)
    out[...] = _BYTE_POPCOUNT[words.view(np.uint8)].reshape(*words.shape, 8).sum(-1, dtype=np.uint8)
    return out


def hamming_counts(queries: PackedCodes, base: PackedCodes, block: int = 64):
    """Yield (start, counts) with counts `[<=block, n_base]` = popcount(query XOR base) over packed words."""
    if queries.n_bits != base.n_bits:
        raise ConfigError(f"query codes have {queries.n_bits} bits, base codes {base.n_bits}",
                          hint="drop constant units with one mask for both sets")
    base_t = np.ascontiguousarray(base.words.T)  # [n_words, n_base]: one contiguous row per word
    dtype = np.uint16 if base.n_bits < 2**16 else np.uint32
    n_base = base.n
    buf = np.empty((block, n_base), dtype=np.uint64)
    cnt = np.empty((block, n_base), dtype=np.uint8)
    for s in range(0, queries.n, block):
        q = queries.words[s: s + block]
        m = q.shape[0]
        acc = np.zeros((m, n_base), dtype=dtype)
        for w in range(base_t.shape[0]):  # loop over 64-bit words (n_bits/64 of them), vectorised over samples
            np.bitwise_xor(q[:, w, None], base_t[w][None, :], out=buf[:m])
            _popcount64(buf[:m], cnt[:m])
            np.add(acc, cnt[:m], out=acc)
        yield s, acc


def hamming_distances(queries: PackedCodes, base: PackedCodes) -> np.ndarray:
    """All Hamming distances (number of differing bits) `[n_queries, n_base]` as int32."""
    out = np.empty((queries.n, base.n), dtype=np.int32)
    for s, acc in hamming_counts(queries, base):
        out[s: s + acc.shape[0]] = acc
    return out


def hamming_knn_predict(train: PackedCodes | np.ndarray, y_train: np.ndarray, test: PackedCodes | np.ndarray,
                        k: int = 9, block: int = 64) -> np.ndarray:
    """k-NN majority vote under Hamming distance on packed codes; predictions equal scikit-learn's exactly.

    Equality with `KNeighborsClassifier(k, metric='hamming')` fitted on {0,1} integer codes (brute path): the
    neighbour set is every base code with distance < the k-th smallest d*, plus, when more codes tie at d*
    than places are left, the ones np.argpartition picks from the same float64 distances (count / n_bits)
    that scikit-learn computes; votes tie-break to the smallest label, as scipy.stats.mode does.
    """
    train = train if isinstance(train, PackedCodes) else pack(train)
    test = test if isinstance(test, PackedCodes) else pack(test)
    classes, yi = np.unique(np.asarray(y_train).ravel(), return_inverse=True)
    yi = yi.ravel()
    if yi.size != train.n:
        raise ConfigError(f"{train.n} train codes but {yi.size} labels", hint="pass one label per train code")
    if not 1 <= k <= train.n:
        raise ConfigError(f"k={k} must be between 1 and the number of train codes ({train.n})",
                          hint="lower k or add train codes")
    n_cls = classes.size
    pred = np.empty(test.n, dtype=np.int64)
    denom = float(max(train.n_bits, 1))
    for s, d in hamming_counts(test, train, block=block):
        m = d.shape[0]
        dstar = np.partition(d, k - 1, axis=1)[:, k - 1]
        below = d < dstar[:, None]
        at = d == dstar[:, None]
        clean = below.sum(1) + at.sum(1) == k  # the k nearest are unambiguous
        votes = np.zeros((m, n_cls), dtype=np.int64)
        rows, cols = np.nonzero((below | at) & clean[:, None])
        np.add.at(votes, (rows, yi[cols]), 1)
        amb = np.flatnonzero(~clean)
        if amb.size:
            # boundary ties: reproduce scikit-learn's _kneighbors_reduce_func on its float64 distances
            nb = np.argpartition(d[amb] / denom, k - 1, axis=1)[:, :k]
            np.add.at(votes, (np.repeat(amb, k), yi[nb].ravel()), 1)
        pred[s: s + m] = votes.argmax(axis=1)
    return classes[pred]


def knn_predict(train: PackedCodes, y_train: np.ndarray, test: PackedCodes, k: int = 9,
                algorithm: str = "brute") -> np.ndarray:
    """Hamming k-NN: 'brute' (default) = exact distances to every train code, one tie rule at every code length.

    Ties: every code nearer than the k-th smallest distance d* votes; of the codes at d*, the ones np.argpartition
    places first in the float64 distance row vote (scikit-learn's brute rule: deterministic, equal to
    KNeighborsClassifier(algorithm='brute'), not index order); equal votes go to the smallest label.
    'auto' = as the reference ran scikit-learn: a ball tree for <= 15 bits, whose choice among tied codes follows
    the tree's layout (at 2 bits nearly every neighbour ties, so this changes the score), brute force above.
    """
    if algorithm not in ("auto", "brute"):
        raise ConfigError(f"unknown k-NN algorithm '{algorithm}'", hint="use 'brute' or 'auto'")
    if algorithm == "auto" and train.n_bits <= 15:
        from sklearn.neighbors import KNeighborsClassifier

        tr = train.unpack() if train.n_bits else np.zeros((train.n, 1), np.uint8)
        te = test.unpack() if test.n_bits else np.zeros((test.n, 1), np.uint8)
        return KNeighborsClassifier(n_neighbors=k, metric="hamming").fit(tr, y_train).predict(te)
    return hamming_knn_predict(train, y_train, test, k=k)


def knn_accuracy(train: PackedCodes, y_train: np.ndarray, test: PackedCodes, y_test: np.ndarray,
                 k: int = 9, algorithm: str = "brute") -> float:
    """Test accuracy of the Hamming k-NN (see knn_predict for the algorithm and the tie rule)."""
    return float(np.mean(knn_predict(train, y_train, test, k=k, algorithm=algorithm) == np.asarray(y_test)))


def tie_aware_knn_accuracy(train: PackedCodes, y_train: np.ndarray, test: PackedCodes, y_test: np.ndarray,
                           k: int = 9) -> float:
    """k-NN test accuracy that does not depend on how ties are broken.

    Short binary codes leave many training points at exactly the k-th Hamming distance, and any tie rule (the
    order of a ball tree, np.argpartition) then decides the prediction. Here the neighbours strictly closer than
    the k-th distance vote with weight 1 and the m points at the k-th distance share the remaining k - n_closer
    votes equally; a test point whose top vote is shared by t classes counts 1/t if its label is among them.
    """
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    dist = hamming_distances(test, train).astype(np.float64)  # [n_test, n_train]
    k = min(int(k), dist.shape[1])
    kth = np.partition(dist, k - 1, axis=1)[:, k - 1: k]
    closer, at_kth = dist < kth, dist == kth
    share = (k - closer.sum(1)) / at_kth.sum(1)
    weights = closer + at_kth * share[:, None]
    classes = np.unique(np.concatenate([y_train, y_test]))
    votes = weights @ (y_train[:, None] == classes[None, :]).astype(np.float64)  # [n_test, n_classes]
    top = np.isclose(votes, votes.max(1, keepdims=True), rtol=0, atol=1e-9)
    own = top[np.arange(len(y_test)), np.searchsorted(classes, y_test)]
    return float(np.mean(own / top.sum(1)))


def kmeans_accuracy(codes: np.ndarray, y: np.ndarray, n_clusters: int | None = None, seed: int = 9,
                    n_init: int = 10) -> dict[str, float]:
    """K-means (Euclidean on {0,1} codes) then greedy and Hungarian cluster accuracy."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    n_clusters = n_clusters or int(np.unique(y).size)
    x = codes.astype(np.float64) if codes.shape[1] else np.zeros((codes.shape[0], 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pred = KMeans(n_clusters=n_clusters, random_state=seed, n_init=n_init).fit_predict(x)
    return {"greedy": cluster_accuracy(pred, y, "greedy"), "hungarian": cluster_accuracy(pred, y, "hungarian")}


def logreg_accuracy(codes_tr: np.ndarray, y_tr: np.ndarray, codes_te: np.ndarray, y_te: np.ndarray,
                    seed: int = 9, max_iter: int = 1000, solver: str = "lbfgs") -> float:
    """One-vs-one logistic regression (C=1; lbfgs as the reference, or newton-cholesky: the same convex
    objective, ~6x faster on these few-hundred-bit codes) fitted on train codes, accuracy on test codes."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsOneClassifier

    if codes_tr.shape[1] == 0:
        codes_tr, codes_te = np.zeros((len(codes_tr), 1)), np.zeros((len(codes_te), 1))
    if solver == "auto":  # Newton steps cost O(bits^3): fast for short codes, lbfgs for long ones
        solver = "newton-cholesky" if codes_tr.shape[1] <= 256 else "lbfgs"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = OneVsOneClassifier(LogisticRegression(random_state=seed, max_iter=max_iter, solver=solver))
        clf.fit(codes_tr.astype(np.float64), y_tr)
    return float(np.mean(clf.predict(codes_te.astype(np.float64)) == y_te))


def categorization_suite(codes_tr: np.ndarray, y_tr: np.ndarray, codes_te: np.ndarray, y_te: np.ndarray,
                         k: int = 9, kmeans_seed: int = 9, lr_seed: int = 9, lr_max_iter: int = 1000,
                         lr_solver: str = "lbfgs",
                         metrics: tuple[str, ...] = ("kmeans", "knn", "logreg")) -> dict[str, float]:
    """Reference categorisation metrics on {0,1} codes: K-means (train/test, greedy + Hungarian), k-NN, OvO-LR."""
    out: dict[str, float] = {}
    if "kmeans" in metrics:
        for split, c, y in (("train", codes_tr, y_tr), ("test", codes_te, y_te)):
            km = kmeans_accuracy(c, y, seed=kmeans_seed)
            out[f"kmeans_{split}"] = km["greedy"]
            out[f"kmeans_hungarian_{split}"] = km["hungarian"]
    if "knn" in metrics:
        out["knn"] = knn_accuracy(pack(codes_tr), y_tr, pack(codes_te), y_te, k=k)
    if "logreg" in metrics:
        out["logreg"] = logreg_accuracy(codes_tr, y_tr, codes_te, y_te, seed=lr_seed, max_iter=lr_max_iter,
                                        solver=lr_solver)
    return out
