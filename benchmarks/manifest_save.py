"""Cost of one manifest save as the cache grows: the previous encoding against `Manifest.to_bytes`, side by side.

Extraction's writer thread rewrites the manifest after every shard. `json.dumps(indent=1)` runs json's
pure-Python encoder, which holds the GIL (and so stalls the thread that launches the model's kernels) while it
re-encodes every listed shard. `Manifest.to_bytes` encodes each shard's line once and reuses it.

    python benchmarks/manifest_save.py [--out benchmarks/results/manifest_save.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from interp.cache.manifest import Manifest, ShardRecord  # noqa: E402


def _manifest(n_shards: int, n_hooks: int = 3) -> Manifest:
    m = Manifest(identity={"model": "bench"}, hooks={}, layout={}, environment={})
    m.shards = [ShardRecord(k, (k * 16384, (k + 1) * 16384), (k * 32, (k + 1) * 32),
                            {f"h{i}.{k:06d}.npy": {"sha256": "ab" * 32, "bytes": 1 << 26} for i in range(n_hooks)})
                for k in range(n_shards)]
    return m


def _median_ms(fn, repeats: int = 7) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2] * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    lines = ["# Manifest save cost (benchmarks/manifest_save.py)", "",
             f"Command: `python {' '.join(sys.argv)}`  ",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; shards "
             "of 3 hook files; encoding only (no disk); median of 7 saves, each after the manifest was saved once.", "",
             "| listed shards | json.dumps(indent=1) ms (before) | Manifest.to_bytes ms (now) | ratio |",
             "|---|---|---|---|"]
    for n in (100, 1000, 5000):
        m = _manifest(n)
        m.to_bytes()  # the lines of listed shards were encoded when those shards were appended
        assert json.loads(m.to_bytes()) == m.to_json()
        old = _median_ms(lambda m=m: json.dumps(m.to_json(), indent=1).encode())
        new = _median_ms(m.to_bytes)
        lines.append(f"| {n:,} | {old:.1f} | {new:.2f} | {old / new:.0f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
