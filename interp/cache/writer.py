"""Background shard writer: overlaps disk writes with compute, keeps memory bounded, lists shards atomically."""

from __future__ import annotations

import errno
import os
import queue
import threading
from dataclasses import dataclass, field
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


def default_writer_threads(device: str | None = None) -> int:
    """Writer threads when none are asked for. On the CPU one per four cores this process may use, at most four:
    the other cores run the model. With a CUDA device the main thread only feeds the GPU, so every core but four
    writes, at most twelve: all residual hooks of a 1B-parameter model arrive at about 10 GB/s. With sha256 one
    thread hashed and wrote about 0.8 GB/s; xxh3_128 (interp.cache.checksum) leaves mostly the copy. File writes
    and the hashes release the GIL, so threads add up."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    if device is not None and str(device).startswith("cuda"):
        return max(1, min(12, cores - 4))
    return max(1, min(4, cores // 4))


@dataclass
class _Pending:
    """A submitted shard whose files are still being written: what its listing needs once the last one lands."""

    index: int
    rows: tuple[int, int]
    blocks: tuple[int, int]
    names: list[str]  # the files in the order they were given: the manifest lists them so
    left: int = 0
    files: dict[str, dict] = field(default_factory=dict)
    failed: bool = False


class ShardWriter:
    """Writes shard files on background threads; `submit` blocks while `max_pending` + 1 shards are unwritten.

    Each file of a shard is its own task, so the threads share a shard of many files (every residual hook) instead
    of one thread writing it alone. Host memory holds at most `max_pending` + 1 submitted shards. When the last file
    of a shard is renamed into place, the thread that wrote it appends the shard to the manifest and replaces the
    manifest atomically (under a lock: shards may be listed out of order, and resume takes any set of them). An
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
        self.queue: queue.Queue = queue.Queue()  # file tasks; the shard slots below bound the memory
        self._slots = threading.Semaphore(max(1, max_pending) + 1)
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
            shard, name, array = item
            record, error = None, None
            if not self._failed:  # after a failure the queue drains without writing
                try:
                    record = write_npy_atomic(self.directory / name, array)
                except BaseException as e:  # noqa: BLE001 - handed to the main thread
                    self._failed, error = True, e  # at once: no thread starts another file
            del array, item
            self._done(shard, name, record, error)

    def _done(self, shard: _Pending, name: str | None, record: dict | None, error: BaseException | None) -> None:
        """Count one file of `shard` as finished (None: a shard of no files); the last one lists the shard, if all
        of it was written."""
        with self._listing:
            try:
                if error is not None and self.error is None and not self._reported:
                    self.error = _disk_error(error, shard.index, self.directory) if isinstance(error, OSError) \
                        else error
                if name is None:
                    pass
                elif record is None:
                    shard.failed = True
                else:
                    shard.files[name] = record
                    self.bytes_written += record["bytes"]
                shard.left -= 1
                # a shard whose every file landed is listed even after another failed (its files were being
                # written beside the failed one): resume takes any set of listed shards
                if shard.left == 0 and not shard.failed:
                    files = {n: shard.files[n] for n in shard.names}
                    self.manifest.shards.append(ShardRecord(shard.index, shard.rows, shard.blocks, files))
                    self.manifest.save(self.directory, self.manifest_name)
            except BaseException as e:  # noqa: BLE001 - the manifest could not be saved: handed over likewise
                self._failed = True
                if self.error is None and not self._reported:
                    self.error = _disk_error(e, shard.index, self.directory) if isinstance(e, OSError) else e
            finally:
                if shard.left == 0:
                    self._slots.release()

    def _raise(self) -> None:
        with self._listing:
            err, self.error = self.error, None
            self._reported = self._reported or err is not None
        if err is not None:
            raise err

    def submit(self, index: int, rows: tuple[int, int], blocks: tuple[int, int], arrays: dict[str, np.ndarray]):
        self._raise()
        self._slots.acquire()
        shard = _Pending(index, rows, blocks, list(arrays), left=max(1, len(arrays)))
        if not arrays:  # nothing to write: listed at once (extract always writes a tokens file)
            self._done(shard, None, None, None)
            return
        for name, array in arrays.items():
            self.queue.put((shard, name, array))

    def close(self) -> None:
        """Wait until every queued shard is on disk; re-raise a writer error."""
        for _ in self.threads:
            self.queue.put(None)
        for t in self.threads:
            t.join()
        self._raise()
