"""Multi-GPU extraction scaling: `torchrun --nproc_per_node=N` against one process, same model, hooks and tokens.

The model is a random-weight GPT-NeoX of Pythia-1B's shape (d_model 2048, 16 layers, d_mlp 8192) in bf16, built
identically on every rank from a seed, used as a plain nn.Module (hook names are module paths), so the run needs no
model hub and no transformer-lens. Each run extracts the last layer's output for the same token blocks.

    python benchmarks/distributed_extract.py --gpus 1 2 [--tokens 1048576] [--repeats 3] [--out benchmarks/results/X.md]
    python benchmarks/distributed_extract.py --worker --out-dir DIR ...   (what torchrun starts on each rank)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {  # (hidden, layers, heads, d_mlp)
    "pythia-1b": (2048, 16, 8, 8192),
    "tiny": (64, 2, 4, 256),
}


PHASES = ("seconds", "setup", "probe", "capture", "encode", "writer_wait", "drain", "finish", "other")


def build_model(size: str, device: str, dtype):
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from interp.models import DEFAULT_MODEL, load_tokenizer

    d, n_layers, heads, d_mlp = SIZES[size]
    cfg = GPTNeoXConfig(vocab_size=50304, hidden_size=d, num_hidden_layers=n_layers, num_attention_heads=heads,
                        intermediate_size=d_mlp, max_position_embeddings=2048, rotary_pct=0.25,
                        use_parallel_residual=True)
    torch.manual_seed(0)
    with torch.device(device):
        model = GPTNeoXForCausalLM(cfg).to(dtype).eval()
    model.tokenizer = load_tokenizer(DEFAULT_MODEL)  # ids < 863, inside the 50304-entry embedding
    return model, n_layers


def write_corpus(path: Path, n_tokens: int) -> None:
    """The embedded held-out corpus repeated until it holds n_tokens (content does not matter for timing)."""
    from interp.sources import embedded_corpus_path

    text = embedded_corpus_path().read_text()
    reps = max(1, n_tokens // 130_000 + 1)
    path.write_text(text * reps)


def worker(a) -> None:
    import torch

    from interp import distributed
    from interp.extract import ExtractConfig, extract

    distributed.init_from_env("cuda" if a.device == "cuda" else "cpu")
    rank, world = distributed.rank_world()
    device = distributed.local_device(a.device)
    dtype = torch.bfloat16 if a.device == "cuda" else torch.float32
    model, n_layers = build_model(a.size, device, dtype)
    hook = f"gpt_neox.layers.{n_layers - 1}"
    cfg = ExtractConfig(out=a.out_dir, model=f"random-{a.size}", data=a.data, tokens=a.tokens, ctx=a.ctx,
                        batch_size=a.batch_size, dtype="bfloat16", hooks=[hook], device=device, overwrite=True,
                        shard_mb=a.shard_mb, writer_threads=a.writer_threads)
    # warm-up on a few blocks (CUDA context, kernels) outside the timed run
    with torch.inference_mode():
        model(torch.zeros(a.batch_size, a.ctx, dtype=torch.long, device=device))
    distributed.barrier()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    summary = extract(cfg, model=model, progress=False)
    distributed.barrier()
    seconds = time.perf_counter() - t0
    Path(a.out_dir, f"timing.rank{rank}.json").write_text(json.dumps({"seconds": seconds, **summary.timings}))
    if rank == 0:
        Path(a.out_dir, "timing.json").write_text(json.dumps(
            {"world": world, "seconds": seconds, "tokens": summary.n_tokens, "rows": summary.n_rows,
             "bytes": summary.bytes, "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
             "recapture_equal": _recapture_equal(model, hook, a.out_dir, a.batch_size, device)}))


def _recapture_equal(model, hook: str, out_dir: str, batch_size: int, device: str) -> bool:
    """The first and last shards of the cache equal a plain synchronous capture of their batches, bit for bit:
    checks that extraction's asynchronous host copies were complete before the rows were encoded and written."""
    import torch

    from interp.cache import open_cache
    from interp.capture import Capturer

    cache = open_cache(out_dir)
    capturer = Capturer(model, [hook], dtype=torch.bfloat16, flatten=True)
    per_shard = cache.manifest.layout["blocks_per_shard"]
    blocks = cache.tokens[:, 0].reshape(-1, cache.manifest.identity["ctx"])
    for k in (0, len(cache.manifest.shards) - 1):
        b0, b1 = k * per_shard, min((k + 1) * per_shard, len(blocks))
        got = cache.read(hook, b0 * blocks.shape[1], b1 * blocks.shape[1])
        want = torch.cat([capturer(blocks[i: i + batch_size].to(device))[hook].cpu()
                          for i in range(b0, b1, batch_size)])
        if not torch.equal(got, want):
            return False
    return True


def driver(a) -> None:
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    text = work / "corpus.txt"
    write_corpus(text, a.tokens)
    data = work / "tokens.npy"  # pre-tokenized once, as large jobs are: ranks then skip others' blocks for free
    if a.pretokenize:
        import numpy as np

        from interp.models import DEFAULT_MODEL, load_tokenizer
        from interp.sources import token_blocks

        np.save(data, token_blocks(str(text), load_tokenizer(DEFAULT_MODEL), ctx=a.ctx, n_tokens=a.tokens).numpy())
    else:
        data = text
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs: dict[int, list[dict]] = {n: [] for n in a.gpus}
    reference, identical = None, True
    for rep in range(a.repeats):  # world sizes interleaved, so drift of the machine hits all of them alike
        for n in a.gpus:
            timing = _one_run(a, n, data, work / f"cache_{n}", env)
            digests = _digests(work / f"cache_{n}")
            reference = reference or digests
            identical &= digests == reference
            shutil.rmtree(work / f"cache_{n}")  # bounded space in /dev/shm whatever the repeats
            runs[n].append(timing)
            print(f"repeat {rep}, {n} process(es): {timing['seconds']:.2f} s, "
                  f"{timing['tokens'] / timing['seconds']:,.0f} tokens/s", flush=True)
    _report(a, runs, identical)


def _one_run(a, n: int, data: Path, out: Path, env: dict) -> dict:
    """One torchrun launch with n processes; returns rank 0's timing with every rank's phases under 'ranks'."""
    # 4 threads per rank on GPU hosts; on the CPU the ranks share the cores, or they oversubscribe them
    env = {**env, "OMP_NUM_THREADS": str(4 if a.device == "cuda" else max(1, (os.cpu_count() or 1) // n))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
           str(Path(__file__).resolve()), "--worker", "--out-dir", str(out), "--data", str(data),
           "--tokens", str(a.tokens), "--ctx", str(a.ctx), "--batch-size", str(a.batch_size), "--size", a.size,
           "--shard-mb", str(a.shard_mb), "--device", a.device, "--writer-threads", str(a.writer_threads)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        print(res.stdout[-3000:], res.stderr[-3000:])
        raise SystemExit(f"run with {n} processes failed")
    timing = json.loads((out / "timing.json").read_text())
    timing["wall_with_startup"] = time.perf_counter() - t0
    ranked = sorted(out.glob("timing.rank*.json"), key=lambda p: int(p.stem.removeprefix("timing.rank")))
    timing["ranks"] = [json.loads(p.read_text()) for p in ranked]
    return timing


def _report(a, runs: dict[int, list[dict]], identical: bool) -> None:
    """Markdown: median seconds per world size (every repeat listed), efficiency, checks, phases of the median run."""
    first = runs[a.gpus[0]][0]
    median = {n: sorted(rs, key=lambda r: r["seconds"])[(len(rs) - 1) // 2] for n, rs in runs.items()}
    backend, prec = ("NCCL", "bf16") if a.device == "cuda" else ("gloo", "fp32")
    base = first["tokens"] / median[a.gpus[0]]["seconds"] / a.gpus[0]
    lines = ["# Distributed extraction scaling (benchmarks/distributed_extract.py)", "",
             f"Command: `python {' '.join(sys.argv)}`  ",
             f"Machine: {first['gpu']} x {max(a.gpus)}, torchrun --standalone, {backend}; model random {a.size} "
             f"(GPT-NeoX, {prec}), hook: last layer output, {first['tokens']:,} tokens in blocks of {a.ctx}, "
             f"batch {a.batch_size} per rank, {a.shard_mb:g} MB shards, "
             f"{a.writer_threads or 'automatic (one per four cores, at most four)'} writer thread(s) per rank, "
             f"cache written to {a.workdir}; input "
             f"{'pre-tokenized (.npy)' if a.pretokenize else 'text tokenized in every rank'}. {a.repeats} "
             "repeat(s), world sizes interleaved; the median run of each size is reported (of an even count, "
             "the faster middle one).", "",
             "| processes | seconds (median) | every repeat | tokens/s | speed-up | scaling efficiency |",
             "|---|---|---|---|---|---|"]
    for n in a.gpus:
        tps = first["tokens"] / median[n]["seconds"]
        every = ", ".join(f"{r['seconds']:.2f}" for r in runs[n])
        lines.append(f"| {n} | {median[n]['seconds']:.2f} | {every} | {tps:,.0f} | {tps / (base * a.gpus[0]):.2f}x | "
                     f"{tps / (base * n):.2f} |")
    recaptured = all(r.get("recapture_equal") for rs in runs.values() for r in rs)
    lines += ["", f"Shards of every run (all world sizes and repeats) identical, sha256: {identical}. First and last "
              f"shard of every cache equal a synchronous re-capture, bit for bit: {recaptured}.", "",
              "Seconds by phase of `extract` in the median run (ExtractSummary.timings; max over ranks):", "",
              "| processes | " + " | ".join(PHASES) + " |", "|---|" + "---|" * len(PHASES)]
    for n in a.gpus:
        lines.append(f"| {n} | " + " | ".join(f"{max(t.get(p, 0.0) for t in median[n]['ranks']):.2f}"
                                          for p in PHASES) + " |")
    widest = max(a.gpus)
    lines += ["", f"Every rank of the median {widest}-process run (a slow rank or an uneven split shows here):", "",
              "| rank | " + " | ".join(PHASES) + " |", "|---|" + "---|" * len(PHASES)]
    for r, t in enumerate(median[widest]["ranks"]):
        lines.append(f"| {r} | " + " | ".join(f"{t.get(p, 0.0):.2f}" for p in PHASES) + " |")
    if len(a.gpus) >= 2:
        w = [float(n) for n in a.gpus]
        per, fixed = _fit_fixed_cost(w, [median[n]["seconds"] for n in a.gpus])
        lines += ["", f"Least-squares fit T(w) = C / w + F over the medians: C = {per:.2f} s of work that divides "
                  f"over the ranks, F = {fixed:.2f} s that every run pays whatever its size (F caps the efficiency "
                  f"at w ranks at C / (C + w·F))."]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _fit_fixed_cost(world: list[float], seconds: list[float]) -> tuple[float, float]:
    """(C, F) minimising Σ (C / w + F − T(w))²: the divisible work and the fixed cost of a run."""
    import numpy as np

    A = np.stack([1.0 / np.asarray(world), np.ones(len(world))], 1)
    (c, f), *_ = np.linalg.lstsq(A, np.asarray(seconds), rcond=None)
    return float(c), float(f)


def _digests(folder: Path) -> dict[str, str]:
    """sha256 of every shard file, hashed on a thread pool (hashlib releases the GIL): 16 GiB in seconds."""
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    def one(f: Path) -> str:
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 24):
                h.update(chunk)
        return h.hexdigest()

    files = sorted(folder.glob("*.npy"))
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        return dict(zip((f.name for f in files), pool.map(one, files)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--gpus", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--size", default="pythia-1b", choices=list(SIZES))
    ap.add_argument("--shard-mb", type=float, default=64.0, help="shard size (interp extract's default: 64)")
    ap.add_argument("--tokens", type=int, default=1 << 20)
    ap.add_argument("--repeats", type=int, default=1, help="runs per world size (interleaved); the median is kept")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--writer-threads", type=int, default=0, help="shard writer threads per rank (0: automatic)")
    ap.add_argument("--data", default=None)
    ap.add_argument("--pretokenize", action=argparse.BooleanOptionalAction, default=True,
                    help="tokenize once into tokens.npy before the timed runs (default) or tokenize in every rank")
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--workdir", default="/tmp/interp-dist-bench")
    ap.add_argument("--out", default="benchmarks/results/distributed_extract.md")
    a = ap.parse_args()
    worker(a) if a.worker else driver(a)


if __name__ == "__main__":
    main()
