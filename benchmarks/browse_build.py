"""Latent-browser build on the CPU: the streaming collector vs a straightforward torch loop over dense latents.

    python benchmarks/browse_build.py --root /tmp/browse_bench --tokens 262144 524288 1048576

For each N a synthetic top-k cache with planted structure is written once (`interp.browser.synthetic.planted_cache`:
d_sae = 512, k = 16, bf16 values, 65,536-row shards; latent `token % 512` fires at 4–5 on every row). Then each
method runs in a fresh subprocess (2 torch threads), which reports wall time, peak RSS (VmHWM) and the peak of
anonymous memory (RssAnon sampled every 5 ms; RSS also counts the cache's memory-mapped pages):
    stream   interp.browser.collect: three streaming passes, one shard at a time (what `interp browse` runs)
    site     the whole `build_browser` (collect + decoder neighbours + contexts + writing the site), no model
    dense    read every row densified ([N, 512] float32), then per latent: nonzero values, torch.topk, histogram,
             torch.quantile edges and a random sample per quantile bin (what one writes without the cache's tools)
The dense loop's counts and top-k values are checked against the streaming ones. Results: benchmarks/results/
browse_build.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

HOOK = "blocks.0.hook_resid_post"
D_SAE, K = 512, 16


def _anon_sampler(peak: list[int], stop: threading.Event) -> None:
    while not stop.is_set():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                peak[0] = max(peak[0], int(line.split()[1]))
        time.sleep(0.005)


def _dense_loop(reader, k_top: int = 20, n_bins: int = 64, nq: int = 8, s: int = 4):
    import torch

    A = reader.read(HOOK).float()  # [N, d] dense
    out = {"count": [], "top": []}
    g = torch.Generator().manual_seed(0)
    for j in range(A.shape[1]):
        col = A[:, j]
        rows = col.nonzero().squeeze(1)
        v = col[rows]
        out["count"].append(int(v.numel()))
        if not v.numel():
            out["top"].append([])
            continue
        top = torch.topk(v, min(k_top, v.numel()))
        out["top"].append(top.values.tolist())
        torch.histc(v, n_bins, min=0.0, max=float(v.max()))
        edges = torch.quantile(v, torch.linspace(0, 1, nq + 1)[1:-1])
        q = torch.bucketize(v, edges)
        for b in range(nq):
            members = rows[q == b]
            members[torch.randperm(members.numel(), generator=g)[:s]]
    return out


def worker(method: str, cache: str, out: str) -> None:
    import torch

    torch.set_num_threads(2)
    from interp.browser import build_browser
    from interp.browser.collect import collect
    from interp.cache import open_cache

    peak, stop = [0], threading.Event()
    t = threading.Thread(target=_anon_sampler, args=(peak, stop), daemon=True)
    t.start()
    reader = open_cache(cache, verify="size")
    t0 = time.perf_counter()
    result: dict = {}
    if method == "stream":
        data = collect(reader, HOOK, device="cpu")
        result = {"count": data.count.tolist(), "top": [v[v > float("-inf")].tolist() for v in data.top_vals]}
    elif method == "site":
        sae = Path(out).with_suffix(".sae")
        _fake_sae(sae)
        build_browser(sae, cache, Path(out).with_suffix(".site"), model=False, tokenizer=lambda i: f"t{i}",
                      device="cpu")
    else:
        result = _dense_loop(reader)
    secs = time.perf_counter() - t0
    stop.set()
    t.join()
    hwm = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("VmHWM:"))
    Path(out).write_text(json.dumps({"seconds": secs, "hwm_mb": hwm / 1024, "anon_mb": peak[0] / 1024, **result}))


def _fake_sae(path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    save_file({"W_dec": torch.randn(D_SAE, 64, generator=g), "b_dec": torch.zeros(64)},
              str(path / "sae_weights.safetensors"))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--root", default="/tmp/browse_bench")
    p.add_argument("--tokens", type=int, nargs="+", default=[262_144, 524_288, 1_048_576])
    p.add_argument("--methods", nargs="+", default=["stream", "site", "dense"])
    p.add_argument("--worker", nargs=3, metavar=("METHOD", "CACHE", "OUT"))
    a = p.parse_args()
    if a.worker:
        worker(*a.worker)
        return
    from interp.browser.synthetic import planted_cache

    root = Path(a.root)
    rows = []
    for n in a.tokens:
        cache = root / f"cache_{n}"
        if not (cache / "manifest.json").is_file():
            planted_cache(cache, n, d_sae=D_SAE, k=K, hook=HOOK)
        res = {}
        for m in a.methods:
            out = root / f"{m}_{n}.json"
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
            subprocess.run([sys.executable, __file__, "--worker", m, str(cache), str(out)], check=True, env=env)
            res[m] = json.loads(out.read_text())
            print(f"{n:>9,} {m:<6} {res[m]['seconds']:7.1f} s  VmHWM {res[m]['hwm_mb']:7.0f} MB  "
                  f"anon {res[m]['anon_mb']:7.0f} MB", flush=True)
        if "stream" in res and "dense" in res:
            same = res["stream"]["count"] == res["dense"]["count"] and all(
                abs(x - y) < 1e-6 for a_, b_ in zip(res["stream"]["top"], res["dense"]["top"]) for x, y in zip(a_, b_))
            print(f"          counts and top-k values agree: {same}", flush=True)
        rows.append((n, {m: {k: v for k, v in r.items() if k not in ("count", "top")} for m, r in res.items()}))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
