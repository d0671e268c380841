"""Extraction at real model scale on one GPU, side by side with what researchers use instead (issue 23).

One process, one GPU, one random-weight bf16 model at a time (transformer-lens HookedTransformer built from a
HookedTransformerConfig: no downloads), the same pre-tokenized blocks and hook for every variant:

  a_full     bare forward, logits (no hooks)
  a_body     bare forward of the body: stop_at_layer=n_layers (no final norm, no unembedding)
  b_one      interp extract, dense bf16, the last block's residual (`blocks.{L-1}.hook_resid_post`)
  b_all      interp extract, dense bf16, every residual hook (`blocks.*.hook_resid_post`), default flags
  b_all_tuned  the same with flags chosen for it (smaller batch -> smaller shards, more writer threads)
  b_sparse   interp extract --sae DIR --sparse topk on the last residual (random-weight sae-lens TopK SAE)
  c_hand     the loop a user writes: run_with_hooks + forward hook, .cpu(), safetensors.save_file per batch
  d_saelens  sae-lens CacheActivationsRunner on the same model, blocks and hook (HF datasets Arrow shards)
  e_nnsight  nnsight NNsight(model).trace(...) + .save(), .cpu(), safetensors per batch

Variants are interleaved (order rotated every repeat) and the median is reported. Every interp cache of the first
repeat is checked against a plain capture of the same batches (first and last shard, bit for bit, every file).
tokens/s counts input tokens. Outputs go to --shm-dir (tmpfs) and, for the writing variants, also to --disk-dir.

    python benchmarks/extract_gpu.py --device cpu --model tiny                       # seconds, on the CPU
    python3 benchmarks/extract_gpu.py --model pythia-1.4b llama-8b --out $OUT/extract_gpu.md   # on the GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _stub_wandb() -> str | None:
    """transformer-lens and sae-lens import wandb at module level but only call it while training; the GPU image
    has no wandb (a 20 MB wheel the working tree cannot carry), so a stub module stands in when it is missing."""
    try:
        import wandb  # noqa: F401
        return None
    except ImportError:
        pass

    class _Any:
        def __init__(self, *a, **k): ...
        def __call__(self, *a, **k): return _Any()
        def __getattr__(self, name): return _attr(name)

    def _attr(name: str):
        if name.startswith("__"):  # inspect and pickle probe dunders: a stub must not pretend to have them
            raise AttributeError(name)
        return _Any()

    mod = types.ModuleType("wandb")
    mod.__getattr__ = _attr  # type: ignore[attr-defined]
    mod.__path__ = []  # type: ignore[attr-defined]
    import importlib.machinery

    mod.__spec__ = importlib.machinery.ModuleSpec("wandb", None)  # importlib.util.find_spec("wandb") asks for it
    sys.modules["wandb"] = mod
    return "wandb stubbed (not installed)"


from extract_gpu_variants import ALL_VARIANTS, MODELS, PHASES, WRITING, Bench, available  # noqa: E402


def bench_model(a, name: str, t_start: float, log, deadline: float) -> dict:
    import torch

    t0 = time.perf_counter()
    b = Bench(a, name)
    log(f"== {name}: built in {time.perf_counter() - t0:.1f} s; run {b.r}")
    res: dict = {"model": name, "run": b.r, "hook": b.hook, "runs": {}, "errors": {}, "skipped": {}, "checks": {}}
    variants = [v for v in a.variants if v in ALL_VARIANTS]
    if "b_all" in variants or "b_all_tuned" in variants:
        variants.insert(variants.index("a_body") + 1 if "a_body" in variants else 0, "a_body_all")
    for v in list(variants):
        why = available(v)
        if why:
            res["skipped"][v] = why
            variants.remove(v)
            log(f"  skip {v}: {why}")
    if "b_sparse" in variants or "c_sparse_gpu" in variants:
        t = time.perf_counter()
        b.prepare_sparse()
        log(f"  SAE d_sae={b.r['d_sae']} k={b.r['k']} written and loaded in {time.perf_counter() - t:.1f} s")
    # warm-up: CUDA context, cuBLAS handles, kernels for both batch sizes; one tiny run of every variant
    with torch.inference_mode():
        for bs in {b.r["batch"], b.r["batch_all"]}:
            b.model(torch.from_numpy(b.blocks[:bs]).to(a.device), return_type="logits")
    keys = [(v, "shm") for v in variants]
    keys += [(v, "disk") for v in variants if v in a.disk_variants and v in WRITING]
    for rep in range(a.repeats):
        order = keys[rep % len(keys):] + keys[:rep % len(keys)]  # rotated: drift hits every variant alike
        for v, fs in order:
            if fs == "disk" and rep >= a.disk_repeats:
                continue
            if ((v in ("b_sparse", "c_sparse_gpu") and rep >= a.sparse_repeats)
                    or (v == "d_saelens" and rep >= a.saelens_repeats)):
                continue
            if (v, fs) in res["errors"]:
                continue
            if time.perf_counter() > deadline:
                log(f"  this model's share of --budget-s is spent: stop before {v}/{fs} repeat {rep}")
                res["truncated"] = True
                break
            try:
                r = b.run(v, fs)
            except Exception as e:  # noqa: BLE001 - report it and go on with the other variants
                import traceback

                res["errors"][(v, fs)] = f"{type(e).__name__}: {str(e)[:300]}"
                log(f"  ERROR {v}/{fs}: {traceback.format_exc()[-1500:]}")
                shutil.rmtree(b.work[fs] / v, ignore_errors=True)
                continue
            out = r.pop("out", None)
            if rep == 0 and out is not None and v.startswith("b_"):
                t = time.perf_counter()
                r["check"] = b.check_interp(out, r["batch"])
                res["checks"][f"{v}/{fs}"] = r["check"]
                log(f"  check {v}/{fs}: {r['check']} ({time.perf_counter() - t:.1f} s)")
            if rep == 0 and fs == "shm" and v == "b_one":
                from interp.cache import open_cache

                b.first_rows = open_cache(str(out)).read(b.hook, 0, b.r["batch"] * b.r["ctx"]).clone()
            hand = v in ("c_hand", "e_nnsight") and getattr(b, "first_rows", None) is not None
            if rep == 0 and fs == "shm" and hand:
                res["checks"][f"{v}_first_batch_equals_b_one"] = b.check_hand(out)
            if out is not None:
                shutil.rmtree(out, ignore_errors=True)
            res["runs"].setdefault(f"{v}/{fs}", []).append(r)
            gu = "-" if r["gpu_util"] is None else f"{r['gpu_util']:.0f}%"
            log(f"  rep {rep} {v:12s} {fs:4s} {r['seconds']:7.2f} s {r['tokens_per_s']:12,.0f} tok/s gpu {gu}"
                + (f" timings {r['timings']}" if "timings" in r else ""))
        if res.get("truncated"):
            break
    res["errors"] = {f"{v}/{fs}": e for (v, fs), e in res["errors"].items()}
    b.close()
    del b
    if a.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return res


def median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["seconds"])[(len(runs) - 1) // 2]


def machine(a) -> dict:
    import platform

    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()}
    for mod in ("triton", "transformer_lens", "sae_lens", "nnsight", "transformers", "datasets", "numpy"):
        try:
            import importlib.metadata as md

            info[mod] = md.version(mod.replace("_", "-"))
        except Exception:  # noqa: BLE001
            info[mod] = "-"
    info["gpu"] = torch.cuda.get_device_name() if a.device.startswith("cuda") else "none (CPU: " + \
        (platform.processor() or platform.machine()) + ")"
    return info


def report(a, info: dict, results: list[dict], notes: list[str]) -> str:
    lines = ["# Extraction at model scale on one device, next to the usual tools (benchmarks/extract_gpu.py)", "",
             f"Command: `python {' '.join(sys.argv)}`  ",
             f"Machine: {info['gpu']}, {info['cpus']} CPU cores; python {info['python']}, torch {info['torch']}, "
             f"triton {info['triton']}, transformer-lens {info['transformer_lens']}, sae-lens {info['sae_lens']}, "
             f"nnsight {info['nnsight']}, transformers {info['transformers']}, datasets {info['datasets']}.  ",
             f"Repeats: {a.repeats} on tmpfs ({a.shm_dir}), {a.disk_repeats} on local disk ({a.disk_dir}); order "
             "rotated every repeat; the median run is shown (of an even count, the faster middle one). tokens/s "
             "counts input tokens; wall time from the first batch to the last byte written (interp: the whole "
             "`extract()` call, setup, probe, drain and manifest included).", ""]
    for n in notes:
        lines.append(f"- {n}")
    for res in results:
        r = res["run"]
        lines += ["", f"## {res['model']} (random weights, {'bf16' if a.device.startswith('cuda') else 'fp32'}), "
                  f"ctx {r['ctx']}, batch {r['batch']}, hook `{res['hook']}`", ""]
        med = {k: median_run(v) for k, v in res["runs"].items()}
        base = {"full": med.get("a_full/shm"), "body": med.get("a_body/shm"), "body_all": med.get("a_body_all/shm")}
        lines += ["| variant | fs | tokens | seconds (median) | every repeat | tokens/s | vs a_full | vs a_body "
                  "| GPU util | MB written |", "|---|---|---|---|---|---|---|---|---|---|"]
        for key, m in med.items():
            v, fs = key.split("/")
            b_full = base["full"]["tokens_per_s"] if base["full"] else None
            b_body = (base["body_all"] if v in ("b_all", "b_all_tuned", "a_body_all") else base["body"])
            b_body = b_body["tokens_per_s"] if b_body else None
            every = ", ".join(f"{x['seconds']:.2f}" for x in res["runs"][key])
            gu = "-" if m["gpu_util"] is None else f"{m['gpu_util']:.0f}%"
            vs_full = f"{m['tokens_per_s'] / b_full:.2f}x" if b_full else "-"
            vs_body = f"{m['tokens_per_s'] / b_body:.2f}x" if b_body else "-"
            lines.append(f"| {v} | {fs} | {m['tokens']:,} | {m['seconds']:.2f} | {every} | {m['tokens_per_s']:,.0f} | "
                         f"{vs_full} | {vs_body} | {gu} | {m.get('bytes', 0) / 1e6:,.0f} |")
        for k, e in res["errors"].items():
            lines.append(f"| {k.split('/')[0]} | {k.split('/')[1]} | error: {e[:200]} | | | | | | | |")
        for k, why in res["skipped"].items():
            lines.append(f"| {k} | - | skipped: {why} | | | | | | | |")
        ext = {k: m for k, m in med.items() if "timings" in m}
        if ext:
            lines += ["", "interp's seconds by phase (`ExtractSummary.timings`) in the median run; batch, writer "
                      "threads, shards:", "", "| variant | fs | batch | writer threads | shards | " +
                      " | ".join(PHASES) + " |", "|---|---|---|---|---|" + "---|" * len(PHASES)]
            for key, m in ext.items():
                v, fs = key.split("/")
                lines.append(f"| {v} | {fs} | {m['batch']} | {m['writer_threads']} | {m['shards']} | "
                             + " | ".join(f"{m['timings'].get(p, 0.0):.2f}" for p in PHASES) + " |")
        lines += ["", "Targets (tmpfs medians):", ""]
        tp = {k: m["tokens_per_s"] for k, m in med.items()}

        def ratio(x, y, tp=tp):
            return tp[x] / tp[y] if x in tp and y in tp else None

        for label, x, y, goal in (("b_one >= 0.9x a_body", "b_one/shm", "a_body/shm", 0.9),
                                  ("b_one >= 0.9x a_full", "b_one/shm", "a_full/shm", 0.9),
                                  ("b_all >= 0.8x a_body (same tokens)", "b_all/shm", "a_body_all/shm", 0.8),
                                  ("b_all_tuned >= 0.8x a_body (same tokens)", "b_all_tuned/shm", "a_body_all/shm",
                                   0.8),
                                  ("b_one >= 2x d_saelens", "b_one/shm", "d_saelens/shm", 2.0),
                                  ("b_one >= c_hand", "b_one/shm", "c_hand/shm", 1.0),
                                  ("b_one >= e_nnsight", "b_one/shm", "e_nnsight/shm", 1.0),
                                  ("b_sparse vs SAE encoded on the device (c_sparse_gpu)", "b_sparse/shm",
                                   "c_sparse_gpu/shm", 1.0),
                                  ("b_one >= 2x d_saelens (disk)", "b_one/disk", "d_saelens/disk", 2.0),
                                  ("b_one >= c_hand (disk)", "b_one/disk", "c_hand/disk", 1.0)):
            q = ratio(x, y)
            if q is not None:
                lines.append(f"- {label}: {q:.2f}x -> {'met' if q >= goal else 'NOT met'}")
        lines += ["", "Checks: " + (", ".join(f"{k}: {v}" for k, v in res["checks"].items()) or "none ran")]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", default=["pythia-1.4b", "llama-8b"], choices=list(MODELS))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--variants", nargs="+", default=list(ALL_VARIANTS))
    ap.add_argument("--disk-variants", nargs="+", default=["b_one", "b_all_tuned", "c_hand", "d_saelens"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--disk-repeats", type=int, default=1)
    ap.add_argument("--sparse-repeats", type=int, default=1, help="b_sparse and c_sparse_gpu repeats")
    ap.add_argument("--ctx", type=int, default=0, help="override the model's default")
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--tokens", type=int, default=0)
    ap.add_argument("--tokens-all", type=int, default=0)
    ap.add_argument("--batch-all", type=int, default=0, help="b_all_tuned's batch")
    ap.add_argument("--tokens-sparse", type=int, default=0)
    ap.add_argument("--tokens-saelens", type=int, default=0, help="d_saelens's tokens (default: a quarter)")
    ap.add_argument("--saelens-repeats", type=int, default=2)
    ap.add_argument("--shard-mb", type=float, default=64.0)
    ap.add_argument("--writer-threads", type=int, default=0, help="b_one/b_all/b_sparse (0: interp's default)")
    ap.add_argument("--tuned-writer-threads", type=int, default=0, help="b_all_tuned (0: cores - 4)")
    ap.add_argument("--saelens-dtype", default="float32", help="CacheActivationsRunner's dtype (its default)")
    ap.add_argument("--shm-dir", default="/dev/shm")
    ap.add_argument("--disk-dir", default="/var/tmp")
    ap.add_argument("--budget-s", type=float, default=1e9, help="stop starting runs after this many seconds")
    ap.add_argument("--out", default=None, help="markdown report (a .json beside it)")
    a = ap.parse_args()
    a.tuned_writer_threads = a.tuned_writer_threads or max(1, (os.cpu_count() or 4) - 4)
    t_start = time.perf_counter()
    notes = [n for n in (_stub_wandb(),) if n]
    log_lines: list[str] = []

    def log(s):
        s = f"[{time.perf_counter() - t_start:6.1f}s] {s}"
        print(s, flush=True)
        log_lines.append(s)

    import torch

    if not a.device.startswith("cuda"):
        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    info = machine(a)
    log(f"machine: {info}")
    results = []
    for i, name in enumerate(a.model):
        left = a.budget_s - (time.perf_counter() - t_start)
        deadline = time.perf_counter() + left / (len(a.model) - i)  # an equal share of what is left per model
        try:
            results.append(bench_model(a, name, t_start, log, deadline))
        except Exception as e:  # noqa: BLE001 - a model that does not fit: report and go on
            import traceback

            log(f"MODEL {name} FAILED: {traceback.format_exc()[-2000:]}")
            notes.append(f"{name} failed: {type(e).__name__}: {str(e)[:300]}")
        if a.out:
            _write(a, info, results, notes, log_lines)
    text = report(a, info, results, notes)
    print(text)
    if a.out:
        _write(a, info, results, notes, log_lines)


def _write(a, info, results, notes, log_lines):
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(report(a, info, results, notes))
    Path(a.out).with_suffix(".json").write_text(json.dumps({"machine": info, "results": results, "notes": notes,
                                                            "log": log_lines}, indent=1, default=str))


if __name__ == "__main__":
    main()
