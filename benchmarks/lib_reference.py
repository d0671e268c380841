"""Reproduce the spec's modular-addition reference numbers (lib.md §7) on the shipped seeds with `analyses.lib.run`.

    python benchmarks/lib_reference.py --seeds 0 1 2 --out benchmarks/results/lib_reference.json
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch


def main() -> None:
    from analyses.lib import Config, run

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--eval", type=int, default=0, help="test samples for node ablation (0 = all)")
    ap.add_argument("--edge-eval", type=int, default=0, help="samples for the edge bisection (0 = the whole set)")
    ap.add_argument("--edge-eval-set", default="train", choices=["train", "test"])
    ap.add_argument("--save-dir", default=None)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = []
    for s in a.seeds:
        t0 = time.perf_counter()
        r = run(Config(seed=s, n_eval_samples=a.eval, n_edge_eval_samples=a.edge_eval,
                       edge_eval_set=a.edge_eval_set))
        row = {"seed": s, "seconds": round(time.perf_counter() - t0, 1), **r.summary,
               "edges_required": {t: {k: v["n_required"] for k, v in r.details["edge_ablation"][t].items()
                                      if k != "total"} for t in ("lib", "pca")}}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if a.save_dir:
            r.save(os.path.join(a.save_dir, f"seed{s}"))
    res = {"command": "python benchmarks/lib_reference.py " + " ".join(f"--{k} {v}" for k, v in vars(a).items()),
           "threads": torch.get_num_threads(), "rows": rows,
           "lib_edges_total_sum": sum(r["lib_edges_required_total"] for r in rows),
           "pca_edges_total_sum": sum(r["pca_edges_required_total"] for r in rows)}
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
