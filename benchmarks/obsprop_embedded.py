"""obsprop on the embedded suites: wall time of `run()` and the headline numbers next to the paper's (GPT-Neo-1.3B).

    python benchmarks/obsprop_embedded.py [--out benchmarks/results/obsprop_embedded.md]

Runs `analyses.obsprop.run(Config(model=...))` with default options for each embedded suite (one thread), and
writes a markdown table: wall time, load average, and the numbers the issue names (pronoun feature-vector
cosine vs raw observables, zero-shot vs 30+30 gender direction, coupling vs fitted slope, LN cosines, debias).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

ROWS = [
    ("cos(subj, obj) feature vectors at the carrying heads (mean)", "cos_heads_subj_obj_mean", "0.935-0.988"),
    ("cos(subj, obj) raw observables W_U n", "cos_raw_subj_obj", "0.5685"),
    ("carrying heads all above the raw cosine", "pronoun_features_more_similar", "yes"),
    ("cos(ObsProp zero-shot, planted gender direction), unseen names", "gender_cos_obsprop", "n/a"),
    ("cos(30+30 linear probe, planted gender direction), unseen names", "gender_cos_probe30",
     "n/a (cos(probe, ObsProp) = 0.222)"),
    ("cos(30+30 mean difference, planted gender direction), unseen names", "gender_cos_meandiff30", "n/a"),
    ("coupling subj->obj, top head", "coupling_top", "0.712 / 0.801 / 0.748"),
    ("fitted slope obj~subj over held-out tokens, top head", "slope_top", "0.769 / 0.800 / 0.763"),
    ("max abs(coupling - slope) (subj->obj, carrying heads)", "coupling_slope_max_abs_err", "0.057"),
    ("first-order exactness, max rel err (frozen patterns/LN)", "first_order_max_rel_err", "-"),
    ("OV identity / DLA reconstruction rel err", "dla_rel_err", "-"),
    ("cos(LN approx, exact), random y on real LN inputs (mean)", "ln_cos_approx_exact_mean",
     "0.9978 / 0.9994 (feature vectors)"),
    ("LN approx vs exact on {1, x}^perp, max rel err (configured approx_norm)", "ln_approx_perp_rel_err_max", "-"),
    ("cos(ln_final approx, exact) at the confident last token", "ln_final_cos_approx_exact", "-"),
    ("cos(ln_final approx, decision-boundary tangent)", "ln_final_cos_approx_boundary", "-"),
    ("occupation bias gap (she-he), before -> after projecting the bias feature", "debias", "-"),
    ("name pronoun gap (she-he), before -> after", "debias_name", "-"),
    ("bias gap / name gap after projecting only at occupation tokens", "debias_occtok", "-"),
    ("run() wall time, s", "runtime_s", "-"),
]


def _fmt(summary: dict, key: str) -> str:
    if key == "debias":
        return f"{summary['debias_bias_gap_before']:.3f} -> {summary['debias_bias_gap_after']:.3f}"
    if key == "debias_name":
        return f"{summary['debias_name_gap_before']:.3f} -> {summary['debias_name_gap_after']:.3f}"
    if key == "debias_occtok":
        return f"{summary['debias_occtok_bias_gap_after']:.3f} / {summary['debias_occtok_name_gap_after']:.3f}"
    v = summary[key]
    if isinstance(v, bool):
        return "yes" if v else "no"
    return f"{v:.3e}" if isinstance(v, float) and abs(v) < 1e-3 else (f"{v:.4f}" if isinstance(v, float) else str(v))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/obsprop_embedded.md")
    ap.add_argument("--models", nargs="*", default=["toy-pythia-4l", "toy-pythia-2l"])
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(1)
    from analyses.obsprop import Config, run

    sums, walls = {}, {}
    for name in args.models:
        t0 = time.perf_counter()
        res = run(Config(model=name))
        walls[name] = time.perf_counter() - t0
        sums[name] = res.summary
    lines = ["# obsprop on the embedded suites", "",
             f"Command: `python benchmarks/obsprop_embedded.py` (default Config, torch threads = 1). Machine: "
             f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores shared with other jobs "
             f"(load average {os.getloadavg()[0]:.1f} at the end). Wall time includes model loading.", "",
             "| quantity | paper (GPT-Neo-1.3B) | " + " | ".join(args.models) + " |",
             "|---|---|" + "---|" * len(args.models)]
    for label, key, paper in ROWS:
        lines.append(f"| {label} | {paper} | " + " | ".join(_fmt(sums[m], key) for m in args.models) + " |")
    lines.append("| wall time incl. loading, s | - | " + " | ".join(f"{walls[m]:.1f}" for m in args.models) + " |")
    lines.append("")
    lines.append("Carrying heads: " + "; ".join(f"{m}: top head {sums[m]['top_subj_head']}, "
                                                f"{sums[m]['n_carrying_heads']} head(s) with >= 10% of its effect"
                                                for m in args.models))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
