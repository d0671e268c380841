"""A writer lock on a cache folder: one writer at a time; a stale lock from a dead process is taken over."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from interp.errors import CacheLockedError

LOCK = ".lock"
EMPTY_LOCK_GRACE_S = 10.0  # a lock file without a readable holder is a write in progress for this long


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CacheLock:
    """Exclusive lock file holding {pid, host}. Use as a context manager."""

    def __init__(self, directory: Path, owner: str = ""):
        self.path = Path(directory) / (LOCK + (f".{owner}" if owner else ""))
        self.held = False

    def acquire(self) -> None:
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if self._stale(holder):
                    self._break_stale(holder)
                    continue
                who = f"pid {holder.get('pid')} on {holder.get('host')}" if holder else "a writer that is starting"
                raise CacheLockedError(f"{self.path.parent} is being written by {who}",
                                       hint=self._hint(holder or {"host": socket.gethostname()})) from None
            with os.fdopen(fd, "wb") as f:
                f.write(me)
                f.flush()
                os.fsync(f.fileno())
            self.held = True
            try:
                self._refuse_other_kind()
            except BaseException:
                self.release()
                raise
            return
        raise CacheLockedError(f"could not take the lock {self.path}", hint="remove it if no writer is running")

    def _refuse_other_kind(self) -> None:
        """A single-process writer (.lock) and a torchrun job's ranks (.lock.rankN) exclude each other too: an
        `interp extract --overwrite` started by mistake during a torchrun job would otherwise wipe its shards."""
        others = ([p for p in self.path.parent.glob(LOCK + ".rank*") if not p.name.count(".stale.")]
                  if self.path.name == LOCK else [self.path.with_name(LOCK)])
        for other in others:
            holder = CacheLock._read(other)
            if other.exists() and not self._stale(holder, other):
                who = f"pid {holder.get('pid')} on {holder.get('host')}" if holder else "another writer"
                raise CacheLockedError(f"{self.path.parent} is being written by {who} ({other.name})",
                                       hint=self._hint(holder or {}, other))

    def _hint(self, holder: dict, path: Path | None = None) -> str:
        if holder.get("host") == socket.gethostname():
            return "wait for it to finish, or stop it; a lock from a dead process is taken over automatically"
        # another host's process cannot be checked from here (a torchrun rank may land on another node on resume)
        return (f"wait for it to finish; if no job runs on {holder.get('host')} any more, delete {path or self.path} "
                "and rerun with --resume")

    def _holder(self) -> dict | None:
        return CacheLock._read(self.path)

    @staticmethod
    def _read(path: Path) -> dict | None:
        try:
            d = json.loads(path.read_text() or "null")
            return d if isinstance(d, dict) and isinstance(d.get("pid"), int) else None
        except (OSError, ValueError):
            return None

    def _stale(self, holder: dict | None, path: Path | None = None) -> bool:
        """A lock whose process died on this host, or an unreadable one old enough not to be mid-write."""
        if holder is None:
            try:
                return time.time() - (path or self.path).stat().st_mtime > EMPTY_LOCK_GRACE_S
            except FileNotFoundError:
                return True
        return holder.get("host") == socket.gethostname() and not _alive(holder["pid"])

    def _break_stale(self, holder: dict | None) -> None:
        """Move the stale lock aside, then make sure what was moved is the lock judged stale: between the check
        and the rename another process may have broken it and taken the lock itself; its live lock goes back."""
        grave = self.path.with_name(f"{self.path.name}.stale.{os.getpid()}")
        try:
            os.replace(self.path, grave)
        except FileNotFoundError:
            return
        if CacheLock._read(grave) != holder:  # another holder (or one mid-write): not ours to remove
            try:
                os.link(grave, self.path)  # put the live lock back (fails if a third process got in: it holds)
            except FileExistsError:
                pass
        os.unlink(grave)

    def release(self) -> None:
        if self.held:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.held = False

    def __enter__(self) -> CacheLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
