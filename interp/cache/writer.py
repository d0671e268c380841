"""Background shard writer: overlaps disk writes with compute, keeps memory bounded, lists shards atomically."""

from __future__ import annotations

import errno
import os
import queue
import threading
from pathlib import Path

import numpy as np

from interp.cache.manifest import MANIFEST, Manifest, ShardRecord
from interp.cache.shards import write_npy_atomic
from interp.errors import CacheError

_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def _disk_error(e: OSError, index: int, directory: Path) -> Exception:
    """A clear error for a full disk or file-size limit; other OS errors pass through unchanged."""
    if e.errno not in _FULL:
        return e
    why = {errno.ENOSPC: "no space left on the device", errno.EFBIG: "file size limit exceeded",
           errno.EDQUOT: "disk quota exceeded"}[e.errno]
    return CacheError(f"writing shard {index} to {directory} failed: {why}; shards listed before it are intact",
                      hint="free space (or raise the limit), then rerun the same command with --resume")


def default_writer_threads() -> int:
    """Writer threads when none are asked for: one per four cores this process may use, at most four. With sha256 one
    thread hashed and wrote about 0.8 GB/s (hash, then a copy to the page cache), which a GPU outruns; xxh3_128
    (interp.cache.checksum) leaves mostly the copy. Hashing and file writes release the GIL, so threads add up."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(4, cores // 4))


class ShardWriter:
    """Writes shards on background threads; `submit` blocks once `max_pending` shards are queued.

    Host memory holds at most `max_pending` queued shards plus one per thread being written. After every file of a
    shard is renamed into place, the shard is appended to the manifest and the manifest is replaced atomically
    (under a lock: with several threads, shards may be listed out of order, and resume takes any set of them). An
    error on a writer thread (disk full, ...) is re-raised once, by the next `submit` or by `close`; shards listed
    before it stay valid and resumable, and nothing queued after it is written.
    """

    def __init__(self, directory: Path, manifest: Manifest, manifest_name: str = MANIFEST, max_pending: int = 2,
                 threads: int = 1):
        if int(threads) < 1:
            raise CacheError(f"writer threads must be at least 1, got {threads}", hint="pass 1 or more")
        self.directory = Path(directory)
        self.manifest = manifest
        self.manifest_name = manifest_name
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, max_pending))
        self.error: BaseException | None = None
        self._failed = False  # stays set after the error is raised: nothing queued later is written
        self._reported = False  # the first error was raised: later ones (the same full disk) are not
        self._listing = threading.Lock()
        self.bytes_written = 0
        self.threads = [threading.Thread(target=self._run, name=f"interp-shard-writer-{i}", daemon=True)
                        for i in range(int(threads))]
        for t in self.threads:
            t.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self._failed:
                continue  # drain without writing after a failure
            index, rows, blocks, arrays = item
            try:
                files = {name: write_npy_atomic(self.directory / name, arr) for name, arr in arrays.items()}
                with self._listing:
                    self.bytes_written += sum(f["bytes"] for f in files.values())
                    self.manifest.shards.append(ShardRecord(index, rows, blocks, files))
                    self.manifest.save(self.directory, self.manifest_name)
            except BaseException as e:  # noqa: BLE001 - handed to the main thread
                self._failed = True  # at once: no thread takes another shard, even while one is listing
                with self._listing:
                    if self.error is None and not self._reported:
                        self.error = _disk_error(e, index, self.directory) if isinstance(e, OSError) else e

    def _raise(self) -> None:
        with self._listing:
            err, self.error = self.error, None
            self._reported = self._reported or err is not None
        if err is not None:
            raise err

    def submit(self, index: int, rows: tuple[int, int], blocks: tuple[int, int], arrays: dict[str, np.ndarray]):
        self._raise()
        self.queue.put((index, rows, blocks, arrays))

    def close(self) -> None:
        """Wait until every queued shard is on disk; re-raise a writer error."""
        for _ in self.threads:
            self.queue.put(None)
        for t in self.threads:
            t.join()
        self._raise()
