"""Load: four readers on a cache while it is being appended; a 2M-token extraction with bounded memory (slow)."""

import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from interp.cache import open_cache
from interp.errors import CacheError
from interp.models import DEFAULT_MODEL, embedded_names

ROOT = Path(__file__).resolve().parents[2]


def test_four_readers_while_appending(tmp_path, tiny_neox_dir, text_file):
    out = tmp_path / "growing"
    args = ["extract", "--model", str(tiny_neox_dir), "--data", str(text_file), "--out", str(out), "--ctx", "32",
            "--batch-size", "4", "--tokens", "6144", "--shard-mb", "0.01", "--quiet", "--hooks",
            "blocks.*.hook_resid_post"]
    writer = subprocess.Popen([sys.executable, "-m", "apps.cli", *args], env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stderr=subprocess.PIPE, text=True)
    seen: list[list[int]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def reader(i: int) -> None:
        while writer.poll() is None:
            try:
                r = open_cache(out, allow_incomplete=True)  # verify="lazy": checksum of every file it touches
            except CacheError:
                time.sleep(0.01)  # no manifest yet
                continue
            try:
                x = r.read("blocks.1.hook_resid_post")
                assert x.shape == (r.n_rows, 32) and len(r.tokens) == r.n_rows
                seen[i].append(r.n_rows)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
                return

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    _, err = writer.communicate(timeout=900)
    for t in threads:
        t.join()
    assert writer.returncode == 0, err
    assert not errors, errors[0]
    assert all(s == sorted(s) for s in seen)  # readers only ever see the cache grow
    assert sum(len(s) for s in seen) >= 4 and max(max(s) for s in seen if s) > 0
    assert open_cache(out).n_rows == 6144


@pytest.mark.slow
@pytest.mark.skipif(DEFAULT_MODEL not in embedded_names(), reason="needs the embedded default")
def test_two_million_tokens_bounded_memory(tmp_path):
    """2M tokens of the embedded corpus (repeated) through the default model; peak RSS stays far below the cache."""
    from interp.extract import ExtractConfig, extract
    from interp.sources import embedded_corpus_path

    big = tmp_path / "big.jsonl"
    big.write_text(embedded_corpus_path().read_text() * 16)
    out = tmp_path / "c"
    t0 = time.perf_counter()
    summary = extract(ExtractConfig(out=str(out), data=str(big), tokens=2_000_000 // 128 * 128, ctx=128,
                                    batch_size=32, hooks=["blocks.*.hook_resid_post"], dtype="bfloat16"),
                      progress=False)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"2M-token extraction: {time.perf_counter() - t0:.0f} s, {summary.bytes / 2**20:.0f} MiB written, "
          f"peak RSS {peak_mb:.0f} MiB")
    assert summary.n_tokens >= 1_999_000 and summary.bytes > 1.9e9
    assert peak_mb < 3000
    assert open_cache(out, verify="size").n_rows == summary.n_rows
