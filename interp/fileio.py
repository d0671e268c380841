"""Atomic file writes: a temporary file in the target's folder, fsync, rename. Readers see the old file or the new
one, never a half-written one; a write cut short leaves only a `.NAME.*.tmp` that interp removes later.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@functools.cache
def _file_mode() -> int:
    """0o666 less the process umask: what open() would give. mkstemp's own 0o600 would make reports and shared
    caches unreadable to other users. Read once, from /proc where it can be read without setting it."""
    try:
        status = Path("/proc/self/status").read_text()
        mask = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("Umask:")), 8)
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)  # os.umask only reads by setting: a brief window, once per process
        os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """`with atomic_file(p) as f: f.write(...)`: p appears complete on success, unchanged on any error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_file`)."""
    with atomic_file(path) as f:
        f.write(data)


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove `folders` (deepest first) while they are empty: what a failed run created and left empty. rmdir
    refuses a folder with anything in it, so no file (a claimed manifest, shards, the user's) is ever lost."""
    for folder in folders:
        try:
            Path(folder).rmdir()
        except OSError:
            return  # not empty (or gone): the folders above it are not empty either
