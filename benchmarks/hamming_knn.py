"""Benchmark: 9-NN Hamming on bit-packed codes (popcount) vs scikit-learn KNeighborsClassifier(metric='hamming').

    .venv/bin/python benchmarks/hamming_knn.py [--n-train 10000 --n-query 10000 --bits 1024 --out FILE]

Both sides run single-threaded on the same {0,1} uint8 codes (class prototypes with 30% of bits flipped, so
Hamming ties at the 9th neighbour occur); the predictions must be identical. Writes a markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_codes(n_train: int, n_query: int, bits: int, noise: float, seed: int = 0):
    """Clustered {0,1} codes: 10 random prototypes, each bit flipped with probability `noise`."""
    rng = np.random.default_rng(seed)
    proto = rng.integers(0, 2, (10, bits), dtype=np.uint8)
    y = rng.integers(0, 10, n_train)
    yq = rng.integers(0, 10, n_query)
    X = (proto[y] ^ (rng.random((n_train, bits)) < noise)).astype(np.uint8)
    Q = (proto[yq] ^ (rng.random((n_query, bits)) < noise)).astype(np.uint8)
    return X, y, Q, yq


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-train", type=int, default=10_000)
    ap.add_argument("--n-query", type=int, default=10_000)
    ap.add_argument("--bits", type=int, default=1024)
    ap.add_argument("--noise", type=float, default=0.3)
    ap.add_argument("--k", type=int, default=9)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "hamming_knn.md"))
    args = ap.parse_args(argv)

    from threadpoolctl import threadpool_limits

    from analyses.hashcodes.categorize import hamming_knn_predict
    from analyses.hashcodes.codes import pack

    X, y, Q, yq = make_codes(args.n_train, args.n_query, args.bits, args.noise)
    with threadpool_limits(1):
        from sklearn.neighbors import KNeighborsClassifier

        t0, c0 = time.perf_counter(), time.process_time()
        ref = KNeighborsClassifier(n_neighbors=args.k, metric="hamming").fit(X, y).predict(Q)
        t_sk, c_sk = time.perf_counter() - t0, time.process_time() - c0

        t0, c0 = time.perf_counter(), time.process_time()
        pX, pQ = pack(X), pack(Q)
        t_pack = time.perf_counter() - t0
        pred = hamming_knn_predict(pX, y, pQ, k=args.k)
        t_pk, c_pk = time.perf_counter() - t0, time.process_time() - c0

    same = bool(np.array_equal(pred, ref))
    rows = [
        ("scikit-learn KNeighborsClassifier(9, metric='hamming')", t_sk, c_sk, float(np.mean(ref == yq))),
        ("packed popcount (analyses.hashcodes, incl. packing)", t_pk, c_pk, float(np.mean(pred == yq))),
    ]
    lines = [
        "# Hamming 9-NN: packed popcount vs scikit-learn",
        "",
        f"Command: `.venv/bin/python benchmarks/hamming_knn.py --n-train {args.n_train} --n-query {args.n_query} "
        f"--bits {args.bits}`",
        f"Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} cores (shared with other jobs; "
        f"load average {os.getloadavg()[0]:.1f} at the end), single-threaded (threadpoolctl limit 1).",
        f"Data: {args.n_train} train x {args.bits}-bit codes, {args.n_query} queries, 10 class prototypes with "
        f"{args.noise:.0%} of bits flipped. Packed storage {pX.nbytes / 1e6:.2f} MB vs {X.nbytes / 1e6:.2f} MB "
        f"unpacked; packing took {t_pack:.3f} s.",
        "",
        "| method | wall s | CPU s | test accuracy |",
        "|---|---|---|---|",
        *[f"| {n} | {w:.2f} | {c:.2f} | {a:.4f} |" for n, w, c, a in rows],
        "",
        f"**Identical predictions: {same}.** Speed-up: {t_sk / t_pk:.1f}x wall, {c_sk / c_pk:.1f}x CPU time.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    if not same:
        raise SystemExit("predictions differ")


if __name__ == "__main__":
    main()
