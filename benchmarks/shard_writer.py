"""Shard writer throughput: the previous single-thread writer against `ShardWriter` with 1..N threads, side by side.

Extraction hands every shard to `ShardWriter`, which hashes each file (sha256, for the manifest) and writes it
through a temporary file and a rename. On an H200 one writer thread (about 0.8 GB/s) was the bottleneck of a
bf16 Pythia-1B extraction: the main thread waited 16 of 21 s on the writer queue. The previous writer ran numpy's
`write_array`, which copies every piece through `tobytes` before it is hashed and written. The current one hashes
and writes straight from the array's memory, on `threads` threads (hashlib and file writes release the GIL).

    python benchmarks/shard_writer.py [--dir /dev/shm/interp-writer] [--shards 32] [--shard-mb 64] [--out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from interp.cache import writer as writer_mod  # noqa: E402
from interp.cache.manifest import Manifest  # noqa: E402
from interp.cache.shards import shard_file, write_npy_atomic  # noqa: E402
from interp.fileio import atomic_file  # noqa: E402


class _HashingWriter:
    """The previous writer's file wrapper: numpy hands it `tobytes` copies, it hashes and writes them."""

    def __init__(self, f):
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def write(self, b) -> int:
        b = memoryview(b).cast("B")
        self.sha.update(b)
        self.size += len(b)
        return self.f.write(b)


def previous_write(path: Path, array: np.ndarray) -> dict:
    with atomic_file(path) as f:
        hw = _HashingWriter(f)
        np.lib.format.write_array(hw, np.ascontiguousarray(array), allow_pickle=False)
    return {"sha256": hw.sha.hexdigest(), "bytes": hw.size}


def run(folder: Path, arrays: list[np.ndarray], threads: int, write) -> tuple[float, dict]:
    """Seconds to write every shard through a ShardWriter (with `write` as its file writer), and the listing."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    writer_mod.write_npy_atomic = write
    w = writer_mod.ShardWriter(folder, Manifest(identity={}, hooks={}, layout={}), max_pending=2, threads=threads)
    t = time.perf_counter()
    for i, a in enumerate(arrays):
        w.submit(i, (i, i + 1), (i, i + 1), {shard_file("h", i): a})
    w.close()
    seconds = time.perf_counter() - t
    writer_mod.write_npy_atomic = write_npy_atomic
    return seconds, {s.index: s.files for s in w.manifest.shards}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/dev/shm/interp-writer")
    ap.add_argument("--shards", type=int, default=32)
    ap.add_argument("--shard-mb", type=float, default=64.0)
    ap.add_argument("--threads", type=int, nargs="+", default=None, help="default: 1 2 4 up to the cores")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = a.threads or [t for t in (1, 2, 4, 8) if t <= max(1, cores)]
    rng = np.random.default_rng(0)
    cols = 2048
    rows = int(a.shard_mb * 2**20 // (cols * 2))
    pool = [rng.integers(-30000, 30000, size=(rows, cols), dtype=np.int16) for _ in range(4)]
    arrays = [pool[i % len(pool)] for i in range(a.shards)]  # bf16 bit patterns, as extraction stores them
    gb = sum(x.nbytes for x in arrays) / 1e9
    cases = [("previous (numpy write_array, tobytes copies)", 1, previous_write)] + \
            [(f"ShardWriter, {t} thread(s)", t, write_npy_atomic) for t in threads]
    times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    listings = []
    for _ in range(a.repeats):  # cases interleaved, so drift of the machine hits all of them alike
        for name, t, write in cases:
            seconds, listing = run(Path(a.dir), arrays, t, write)
            times[name].append(seconds)
            listings.append(listing)
    shutil.rmtree(a.dir, ignore_errors=True)
    same = all(lst == listings[0] for lst in listings)
    base = sorted(times[cases[0][0]])[a.repeats // 2]
    lines = ["# Shard writer throughput (benchmarks/shard_writer.py)", "",
             f"Command: `python {' '.join(sys.argv)}`  ",
             f"Machine: {platform.machine()}, {cores} cores usable, Python {platform.python_version()}, numpy "
             f"{np.__version__}; {a.shards} shards of {a.shard_mb:g} MB (int16 = bf16 bits, [{rows}, {cols}]) "
             f"written to {a.dir}; median of {a.repeats} runs, cases interleaved.", "",
             "| writer | seconds (median) | GB/s | vs previous |", "|---|---|---|---|"]
    for name, _, _ in cases:
        med = sorted(times[name])[a.repeats // 2]
        lines.append(f"| {name} | {med:.2f} | {gb / med:.2f} | {base / med:.2f}x |")
    lines += ["", f"Every run's files have the same sha256 and sizes in the manifest: {same}."]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
