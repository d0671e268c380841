"""Benchmark: LIB build (bases + squared edges) of the modular-addition model, interp vs a reference-style loop.

The reference (ApolloResearch/rib) takes one backward pass per output dimension; `method="loop"` reproduces that
on the same sections. `auto` (closed-form step Jacobians, the default) and `vmap` (torch.func) are interp's.
Results must agree to 1e-10 (relative): M and Λ per layer, C up to column signs, edges.

    python benchmarks/lib_speed.py --samples 500 --threads 2 --out benchmarks/results/lib_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch


def build(method: str, n: int, seed: int):
    from analyses.lib.basis import lib_build
    from analyses.lib.modadd import ModAddWeights, load_modadd, modadd_data
    from analyses.lib.tl_sections import transformer_lib_model

    try:
        model = load_modadd(seed, torch.float64)
    except ImportError:                       # a bare torch image (GPU host): the weights-only stand-in
        model = ModAddWeights(seed)
    x, _ = modadd_data(seed, "train")
    lm = transformer_lib_model(model, ["ln1.0", "ln2.0", "unembed", "output"], last_pos_only=True)
    t0, c0 = time.perf_counter(), time.process_time()
    layers, edges = lib_build(lm, x[: n or None], method=method)
    return time.perf_counter() - t0, layers, edges, time.process_time() - c0


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def compare(ref, other) -> dict:
    """Largest relative differences between two builds (C compared after aligning column signs)."""
    (_, La, Ea, _), (_, Lb, Eb, _) = ref, other
    out = {"M": 0.0, "Lambda": 0.0, "C": 0.0, "edges": 0.0}
    for a, b in zip(La, Lb):
        if a.M is not None:
            out["M"] = max(out["M"], rel(b.M, a.M))
            out["Lambda"] = max(out["Lambda"], rel(b.Lam, a.Lam))
        sign = torch.sign((a.C * b.C).sum(0))
        out["C"] = max(out["C"], rel(b.C * sign, a.C))
    for a, b in zip(Ea, Eb):
        out["edges"] = max(out["edges"], rel(b, a))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=0, help="train samples (0 = all 3830)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="+", default=["loop", "vmap", "auto"])
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    runs = {m: build(m, a.samples, a.seed) for m in a.methods}
    ref = runs[a.methods[0]]
    res = {"command": "python benchmarks/lib_speed.py " + " ".join(
        f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(a).items() if v is not None),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores_visible": os.cpu_count(),
                    "threads": a.threads, "load_avg_1m": os.getloadavg()[0], "torch": torch.__version__},
        "samples": a.samples, "seconds": {m: round(r[0], 2) for m, r in runs.items()},
        "cpu_seconds": {m: round(r[3], 2) for m, r in runs.items()},
        "speedup_vs_" + a.methods[0]: {m: round(ref[0] / r[0], 2) for m, r in runs.items()},
        "max_rel_diff_vs_" + a.methods[0]: {m: compare(ref, r) for m, r in runs.items() if m != a.methods[0]}}
    print(json.dumps(res, indent=1))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
