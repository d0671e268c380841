"""Extraction throughput, side by side in one run on the same model, hooks and tokens.

(a) plain forward loop, no hooks (the ceiling; logits, and return_type=None)
(b) interp extract writing to disk (background writer, fsync, xxh3_128 checksum)
(c) transformer-lens run_with_cache(names_filter) + torch.save per batch
(d) sae-lens CacheActivationsRunner (one hook: it takes one)
plus memory-mapped read-back bandwidth of the cache written by (b).

    .venv/bin/python benchmarks/extract.py [--tokens 262144] [--device cpu] [--out benchmarks/results/extract.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interp.cache import open_cache  # noqa: E402
from interp.extract import ExtractConfig, extract  # noqa: E402
from interp.models import DEFAULT_MODEL, load  # noqa: E402
from interp.sources import token_blocks  # noqa: E402


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def plain_forward(model, blocks, batch, device, return_type):
    _sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(blocks), batch):
            model(blocks[i:i + batch].to(device), return_type=return_type)
    _sync(device)
    return time.perf_counter() - t0


def run_with_cache_save(model, blocks, batch, device, hooks, folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    names = set(hooks)
    _sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for j, i in enumerate(range(0, len(blocks), batch)):
            _, cache = model.run_with_cache(blocks[i:i + batch].to(device), names_filter=lambda n: n in names)
            torch.save({k: v.cpu() for k, v in cache.items()}, folder / f"batch{j:05d}.pt")
    return time.perf_counter() - t0


def interp_extract(model, model_name, data, tokens, ctx, batch, device, hooks, folder: Path):
    cfg = ExtractConfig(out=str(folder), model=model_name, data=data, tokens=tokens, ctx=ctx, batch_size=batch,
                        hooks=hooks, device=device, overwrite=True)
    t0 = time.perf_counter()
    extract(cfg, model=model, progress=False)
    return time.perf_counter() - t0


def sae_lens_runner(model, blocks, batch, device, hook, d_in, folder: Path):
    import datasets
    import sae_lens.cache_activations_runner as car
    from sae_lens import CacheActivationsRunner, CacheActivationsRunnerConfig

    car.load_model = lambda *a, **k: model
    ds = datasets.Dataset.from_dict({"tokens": blocks.tolist()})
    cfg = CacheActivationsRunnerConfig(dataset_path="unused", model_name="embedded", model_batch_size=batch,
                                       hook_name=hook, d_in=d_in, training_tokens=blocks.numel(),
                                       context_size=blocks.shape[1], new_cached_activations_path=str(folder),
                                       device=device, prepend_bos=False, streaming=False, buffer_size_gb=0.25,
                                       shuffle=False)
    t0 = time.perf_counter()
    CacheActivationsRunner(cfg, override_dataset=ds).run()
    return time.perf_counter() - t0


def read_back(folder: Path, verify: str) -> tuple[float, int]:
    reader = open_cache(folder, verify=verify)
    t0 = time.perf_counter()
    n = 0
    for hook in reader.hooks:
        for x in reader.iter_batches(hook, 65536):
            n += x.numel() * x.element_size()
    return time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--data", default="embedded")
    ap.add_argument("--tokens", type=int, default=131_072)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--out", default="benchmarks/results/extract.md")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = load(a.model, device=a.device)
    blocks = token_blocks(a.data, model.tokenizer, ctx=a.ctx, n_tokens=a.tokens)
    n_tok = blocks.numel()
    mid = model.cfg.n_layers // 2
    one = [f"blocks.{mid}.hook_resid_post"]
    every = [f"blocks.{i}.hook_resid_post" for i in range(model.cfg.n_layers)]
    work = Path(a.workdir or tempfile.mkdtemp(prefix="interp-bench-"))
    plain_forward(model, blocks[: a.batch_size * 2], a.batch_size, a.device, None)  # warm-up
    rows = []

    def add(name, seconds, hooks=""):
        rows.append((name, hooks, seconds, n_tok / seconds))
        print(f"{name:<48} {hooks:<10} {seconds:8.2f} s {n_tok / seconds:12,.0f} tok/s", flush=True)

    add("(a) plain forward, logits", plain_forward(model, blocks, a.batch_size, a.device, "logits"))
    add("(a') plain forward, return_type=None", plain_forward(model, blocks, a.batch_size, a.device, None))
    for label, hooks in (("1 hook", one), (f"{len(every)} hooks", every)):
        add("(b) interp extract -> disk", interp_extract(model, a.model, a.data, n_tok, a.ctx, a.batch_size, a.device,
                                                         hooks, work / f"interp_{len(hooks)}"), label)
        add("(c) run_with_cache + torch.save", run_with_cache_save(model, blocks, a.batch_size, a.device, hooks,
                                                                   work / f"tl_{len(hooks)}"), label)
    add("(d) sae-lens CacheActivationsRunner", sae_lens_runner(model, blocks, a.batch_size, a.device, one[0],
                                                               model.cfg.d_model, work / "saelens"), "1 hook")
    reads = {v: read_back(work / f"interp_{len(every)}", v) for v in ("size", "lazy")}
    t = {r[0] + r[1]: r[3] for r in rows}
    ratios = {
        "(b)/(a) logits, 1 hook": t["(b) interp extract -> disk1 hook"] / t["(a) plain forward, logits"],
        "(b)/(a') return_type=None, 1 hook": t["(b) interp extract -> disk1 hook"]
        / t["(a') plain forward, return_type=None"],
        f"(b)/(a) logits, {len(every)} hooks": t[f"(b) interp extract -> disk{len(every)} hooks"]
        / t["(a) plain forward, logits"],
        "(b)/(c), 1 hook": t["(b) interp extract -> disk1 hook"] / t["(c) run_with_cache + torch.save1 hook"],
        "(b)/(d), 1 hook": t["(b) interp extract -> disk1 hook"] / t["(d) sae-lens CacheActivationsRunner1 hook"],
    }
    for k, v in ratios.items():
        print(f"{k:<40} {v:6.2f}x")
    for v, (sec, nbytes) in reads.items():
        print(f"read-back verify={v}: {nbytes / sec / 1e9:.2f} GB/s ({nbytes / 2**20:.0f} MiB)")
    machine = (f"{platform.platform()}, {os.cpu_count()} CPUs visible, torch {torch.__version__} with {a.threads} "
               f"threads, device {a.device}" + (f" ({torch.cuda.get_device_name()})" if a.device.startswith("cuda")
                                               else ""))
    lines = [
        "# Extraction throughput (benchmarks/extract.py)", "",
        f"Command: `{' '.join(['python', *sys.argv])}`  ",
        f"Machine: {machine}  ",
        f"Model {a.model} ({model.cfg.n_layers} layers, d_model {model.cfg.d_model}), {n_tok:,} tokens "
        f"({len(blocks)} x {a.ctx}), batch {a.batch_size}, float32; all variants in one process, one after another.",
        "", "| variant | hooks | seconds | tokens/s |", "|---|---|---|---|",
        *[f"| {n} | {h} | {s:.2f} | {r:,.0f} |" for n, h, s, r in rows], "",
        "| ratio | value |", "|---|---|", *[f"| {k} | {v:.2f}x |" for k, v in ratios.items()], "",
        "| memory-mapped read-back | GB/s |", "|---|---|",
        *[f"| verify={v} ({nb / 2**20:.0f} MiB) | {nb / sec / 1e9:.2f} |" for v, (sec, nb) in reads.items()],
        "", "verify=size checks file sizes only; verify=lazy also hashes each file (xxh3_128) the first time it is "
        "read.",
    ]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines) + "\n")
    if a.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
