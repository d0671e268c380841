"""Background shard writer: overlaps disk writes with compute, keeps memory bounded, lists shards atomically."""

from __future__ import annotations

import errno
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


class ShardWriter:
    """Writes shards on a background thread; `submit` blocks once `max_pending` shards are queued.

    After every file of a shard is renamed into place, the shard is appended to the manifest and the manifest
    is replaced atomically. An error on the writer thread (disk full, ...) is re-raised by the next
    `submit` or by `close`; shards listed before it stay valid and resumable.
    """

    def __init__(self, directory: Path, manifest: Manifest, manifest_name: str = MANIFEST, max_pending: int = 2):
        self.directory = Path(directory)
        self.manifest = manifest
        self.manifest_name = manifest_name
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, max_pending))
        self.error: BaseException | None = None
        self.bytes_written = 0
        self.thread = threading.Thread(target=self._run, name="interp-shard-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is not None:
                continue  # drain without writing after a failure
            index, rows, blocks, arrays = item
            try:
                files = {name: write_npy_atomic(self.directory / name, arr) for name, arr in arrays.items()}
                self.bytes_written += sum(f["bytes"] for f in files.values())
                self.manifest.shards.append(ShardRecord(index, rows, blocks, files))
                self.manifest.save(self.directory, self.manifest_name)
            except OSError as e:
                self.error = _disk_error(e, index, self.directory)
            except BaseException as e:  # noqa: BLE001 - handed to the main thread
                self.error = e

    def _raise(self) -> None:
        if self.error is not None:
            err, self.error = self.error, None
            raise err

    def submit(self, index: int, rows: tuple[int, int], blocks: tuple[int, int], arrays: dict[str, np.ndarray]):
        self._raise()
        self.queue.put((index, rows, blocks, arrays))

    def close(self) -> None:
        """Wait until every queued shard is on disk; re-raise a writer error."""
        self.queue.put(None)
        self.thread.join()
        self._raise()
