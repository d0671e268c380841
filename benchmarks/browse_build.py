"""Latent-browser build: the streaming collector vs a straightforward torch loop over dense latents, CPU or GPU.

    python benchmarks/browse_build.py --root /tmp/browse_bench --tokens 262144 524288 1048576        # 2-core CPU
    python benchmarks/browse_build.py --device cuda --tokens 1250000 2500000 5000000 10000000 --root /dev/shm/browse
    python benchmarks/browse_build.py --device cuda --d-sae 16384 --k 64 --tokens 10000000 --methods stream site \
        --root /dev/shm/browse                              # a realistic width; dense would need 655 GB

For each N a synthetic top-k cache with planted structure is written once (`interp.browser.synthetic.planted_cache`:
d_sae = 512, k = 16 by default, bf16 values, 65,536-row shards; latent `token % d_sae` fires at 4–5 on every row).
On disk it takes 24 + 4k bytes a row (int64 token triple, uint16 ids, bf16 values): 0.88 GB for 10M tokens at
k = 16 (1.65 GB for the whole first GPU sweep), 2.8 GB at k = 64; writing it took 0.6 s (k = 16) and 2–4.5 s (k = 64)
per 1M tokens on the shared 2-core machine. Each method then runs in a fresh subprocess (`--threads` torch threads:
2 on cpu, all cores on cuda) that reports wall seconds (the device synchronized before the clock stops; CUDA start-up
and a one-shard warm-up, which compiles or loads the Triton kernel, come before it), peak RSS (VmHWM), the peak of
anonymous memory (RssAnon sampled every 5 ms; RSS also counts the cache's memory-mapped pages) and on cuda
`torch.cuda.max_memory_allocated` / `max_memory_reserved`:
    stream   interp.browser.collect on the device: three streaming passes, one shard at a time (`interp browse`)
    site     the whole `build_browser` on the device (collect + decoder neighbours + contexts + the site), no model
    dense    densify the cache shard by shard into one preallocated [N, d_sae] float32 tensor on the device (what
             keeping all SAE latents means), then per latent: nonzero values, torch.topk, histc, quantile edges,
             bucketize and a random sample per quantile bin. Skipped with the reason when [N, d_sae] float32 does
             not fit in 0.9 × the free GPU memory (cuda) or the available host memory (cpu). (The CPU table's dense
             loop read the whole hook in bf16 and then converted it: ~1.6× this peak memory.)
The dense loop's counts and top-k values are checked against the streaming ones (`agrees_with_stream`). Rows are
printed as measured; `--out-json` (rewritten after every row) holds them with the machine; `--budget-s` starts no new
cache or run once that many seconds have passed (a run under way finishes). Results: benchmarks/results/
browse_build.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
HOOK = "blocks.0.hook_resid_post"
QUANTILE_MAX = 1 << 24  # torch.quantile refuses inputs of more than 16M elements


def _status_kb(key: str) -> int:
    return next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith(key + ":"))


def _anon_sampler(peak: list[int], stop: threading.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], _status_kb("RssAnon"))
        time.sleep(0.005)


def _quantile(v, q):
    """torch.quantile (linear interpolation); past its 16M-element input limit the same interpolation on a sort."""
    import torch

    if v.numel() <= QUANTILE_MAX:
        return torch.quantile(v, q)
    srt = torch.sort(v).values
    pos = q.double() * (v.numel() - 1)
    lo, hi = pos.floor().long(), pos.ceil().long()
    return (srt[lo] + (srt[hi] - srt[lo]) * (pos - lo).to(v.dtype)).to(v.dtype)


def _dense_fits(n: int, d: int, dev) -> str:
    """'' when an [n, d] float32 matrix fits on `dev` (0.9 × free GPU memory, or available host memory), else why."""
    import torch

    need = n * d * 4
    if dev.type == "cuda":
        where, free = "GPU", torch.cuda.mem_get_info(dev)[0]
    else:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        where, free = "host", next(int(x.split()[1]) * 1024 for x in meminfo if x.startswith("MemAvailable:"))
    if need <= 0.9 * free:
        return ""
    return f"[{n}, {d}] float32 needs {need / 1e9:.1f} GB, the {where} has {free / 1e9:.1f} GB free (x 0.9)"


def _dense_loop(reader, dev, k_top: int = 20, n_bins: int = 64, nq: int = 8, s: int = 4):
    import torch

    from interp.cache.sparse_formats import read_sparse

    n, d = reader.n_rows, int(reader.spec(HOOK)["d_sae"])
    A = torch.zeros(n, d, dtype=torch.float32, device=dev)
    for i in range(len(reader.shards)):  # densify one shard at a time into the preallocated matrix
        lo, hi = int(reader.offsets[i]), int(reader.offsets[i + 1])
        sp = read_sparse(reader, HOOK, lo, hi).to(dev)
        A[sp.row_ids() + lo, sp.flat_idx().long()] = sp.flat_val().float()
    out, samples = {"count": [], "top": []}, []
    g = torch.Generator(device=dev).manual_seed(0)
    qs = torch.linspace(0, 1, nq + 1, device=dev)[1:-1]
    for j in range(d):
        col = A[:, j]
        rows = col.nonzero().squeeze(1)
        v = col[rows]
        out["count"].append(int(v.numel()))
        if not v.numel():
            out["top"].append([])
            continue
        out["top"].append(torch.topk(v, min(k_top, v.numel())).values.tolist())
        torch.histc(v, n_bins, min=0.0, max=float(v.max()))
        q = torch.bucketize(v, _quantile(v, qs))
        for b in range(nq):
            members = rows[q == b]
            samples.append(members[torch.randperm(members.numel(), generator=g, device=dev)[:s]])
    return out


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def worker(method: str, cache: str, out: str, device: str, threads: int) -> None:
    t_start = time.perf_counter()
    import torch

    torch.set_num_threads(threads)
    from interp.browser import build_browser
    from interp.browser.collect import collect
    from interp.cache import open_cache
    from interp.cache.sparse_formats import read_sparse
    from interp.kernels import latent_stats, to_feature_major

    dev = torch.device(device)
    reader = open_cache(cache, verify="size")
    info: dict = {"threads": threads}
    if dev.type == "cuda":  # CUDA context and the Triton kernel (compiled or loaded) before the clock starts
        info["device_name"] = torch.cuda.get_device_name(dev)
        info["gpu_total_mb"] = torch.cuda.get_device_properties(dev).total_memory / 2**20
        warm = read_sparse(reader, HOOK, 0, min(reader.n_rows, int(reader.offsets[1]))).to(dev)
        latent_stats(to_feature_major(warm), n_top=20)
        del warm
        _sync(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    peak, stop = [0], threading.Event()
    t = threading.Thread(target=_anon_sampler, args=(peak, stop), daemon=True)
    t.start()
    result: dict = {}
    t0 = time.perf_counter()
    if method == "stream":
        data = collect(reader, HOOK, device=device)
        result = {"count": data.count.tolist(), "top": [v[v > float("-inf")].tolist() for v in data.top_vals]}
    elif method == "site":
        sae = Path(out).with_suffix(".sae")
        _fake_sae(sae, int(reader.spec(HOOK)["d_sae"]))
        build_browser(sae, cache, Path(out).with_suffix(".site"), model=False, tokenizer=lambda i: f"t{i}",
                      device=device)
    elif why := _dense_fits(reader.n_rows, int(reader.spec(HOOK)["d_sae"]), dev):
        result = {"skipped": why}
    else:
        result = _dense_loop(reader, dev)
    _sync(dev)
    secs = time.perf_counter() - t0
    stop.set()
    t.join()
    if dev.type == "cuda":
        info["gpu_peak_alloc_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
        info["gpu_peak_reserved_mb"] = torch.cuda.max_memory_reserved(dev) / 2**20
    Path(out).write_text(json.dumps({"seconds": secs, "hwm_mb": _status_kb("VmHWM") / 1024, "anon_mb": peak[0] / 1024,
                                     "worker_s": time.perf_counter() - t_start, **info, **result}))


def _fake_sae(path: Path, d_sae: int) -> None:
    import torch
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    save_file({"W_dec": torch.randn(d_sae, 64, generator=g), "b_dec": torch.zeros(64)},
              str(path / "sae_weights.safetensors"))


def machine() -> dict:
    import torch

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []
    model = next((x.split(":", 1)[1].strip() for x in cpuinfo if x.startswith("model name")), platform.machine())
    info = {"host": platform.node(), "platform": platform.platform(), "cpu": model,
            "cpu_count": os.cpu_count(), "loadavg_start": os.getloadavg(), "torch": torch.__version__,
            "python": platform.python_version()}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    return info


def _agree(a: dict, b: dict) -> bool:
    return a["count"] == b["count"] and all(len(x) == len(y) and all(abs(p - q) < 1e-6 for p, q in zip(x, y))
                                            for x, y in zip(a["top"], b["top"]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default="/tmp/browse_bench")
    p.add_argument("--tokens", type=int, nargs="+", default=[262_144, 524_288, 1_048_576])
    p.add_argument("--methods", nargs="+", default=["stream", "site", "dense"], choices=["stream", "site", "dense"])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--d-sae", type=int, default=512)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--threads", type=int, default=None, help="torch threads per worker (2 on cpu, all cores on cuda)")
    p.add_argument("--budget-s", type=float, default=None, help="start no new cache or run after this many seconds")
    p.add_argument("--out-json", default=None)
    p.add_argument("--worker", nargs=3, metavar=("METHOD", "CACHE", "OUT"))
    a = p.parse_args()
    threads = a.threads or (2 if a.device == "cpu" else os.cpu_count() or 1)
    if a.worker:
        worker(*a.worker, device=a.device, threads=threads)
        return
    from interp.browser.synthetic import planted_cache

    t_begin = time.perf_counter()
    report = {"machine": machine(), "args": {**vars(a), "threads": threads}, "caches": [], "rows": []}

    def save() -> None:
        if a.out_json:
            report["elapsed_s"] = time.perf_counter() - t_begin
            Path(a.out_json).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(a.out_json + ".tmp")
            tmp.write_text(json.dumps(report, indent=1))
            tmp.replace(a.out_json)  # a killed run leaves the last complete file

    def over() -> bool:
        if a.budget_s is not None and time.perf_counter() - t_begin > a.budget_s:
            if not report.get("stopped_by_budget"):
                print(f"budget of {a.budget_s:.0f} s spent after {time.perf_counter() - t_begin:.0f} s: "
                      "no new runs", flush=True)
            report["stopped_by_budget"] = True
            return True
        return False

    root = Path(a.root)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for n in a.tokens:
        if over():
            break
        cache = root / f"cache_d{a.d_sae}_k{a.k}_{n}"
        t0, gen_s = time.perf_counter(), None
        if not (cache / "manifest.json").is_file():
            planted_cache(cache, n, d_sae=a.d_sae, k=a.k, hook=HOOK)
            gen_s = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in cache.iterdir() if f.is_file())
        report["caches"].append({"n": n, "d_sae": a.d_sae, "k": a.k, "bytes": size, "gen_s": gen_s})
        print(f"cache {n:,} tokens: {size / 1e9:.2f} GB on disk" +
              (f", written in {gen_s:.1f} s" if gen_s is not None else " (already there)"), flush=True)
        save()
        res = {}
        for m in a.methods:
            if over():
                break
            out = root / f"{m}_d{a.d_sae}_k{a.k}_{n}.json"
            out.unlink(missing_ok=True)
            cmd = [sys.executable, __file__, "--worker", m, str(cache), str(out), "--device", a.device,
                   "--threads", str(threads)]
            print(f"{n:>10,} {m:<6} ", end="", flush=True)  # what ran, should the whole command be killed
            t_run = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            t_run = time.perf_counter() - t_run
            if proc.returncode or not out.is_file():
                err = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
                row = {"n": n, "method": m, "d_sae": a.d_sae, "k": a.k, "error": f"exit {proc.returncode}: {err}"}
                print(f"FAILED {row['error']}", flush=True)
            else:
                res[m] = json.loads(out.read_text())
                row = {"n": n, "method": m, "d_sae": a.d_sae, "k": a.k, "loadavg": os.getloadavg(), "process_s": t_run,
                       **{k_: v for k_, v in res[m].items() if k_ not in ("count", "top")}}
                if "device_name" in row:
                    report["machine"].setdefault("gpu", row["device_name"])
                    report["machine"].setdefault("gpu_total_mb", row["gpu_total_mb"])
                if "skipped" in row:
                    print(f"skipped: {row['skipped']}", flush=True)
                else:
                    gpu = (f"  GPU peak {row['gpu_peak_alloc_mb']:7.0f} MB (reserved {row['gpu_peak_reserved_mb']:.0f})"
                           if "gpu_peak_alloc_mb" in row else "")
                    print(f"{row['seconds']:7.2f} s  VmHWM {row['hwm_mb']:6.0f} MB  "
                          f"anon {row['anon_mb']:6.0f} MB{gpu}", flush=True)
            report["rows"].append(row)
            save()
        if "count" in res.get("stream", {}) and "count" in res.get("dense", {}):
            ok = _agree(res["stream"], res["dense"])
            next(r for r in report["rows"] if r["n"] == n and r["method"] == "dense")["agrees_with_stream"] = ok
            print(f"{'':>10} dense counts and top-k values agree with stream: {ok}", flush=True)
            save()
    report["elapsed_s"] = time.perf_counter() - t_begin
    save()
    print(f"total {report['elapsed_s']:.1f} s", flush=True)


if __name__ == "__main__":
    main()
