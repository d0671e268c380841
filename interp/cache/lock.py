"""A writer lock on a cache folder: one writer at a time; a stale lock from a dead process is taken over."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from interp.errors import CacheLockedError

LOCK = ".lock"


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
                if holder is None or (holder.get("host") == socket.gethostname() and not _alive(holder["pid"])):
                    self._break_stale(holder)
                    continue
                raise CacheLockedError(
                    f"{self.path.parent} is being written by pid {holder.get('pid')} on {holder.get('host')}",
                    hint=self._hint(holder),
                ) from None
            with os.fdopen(fd, "wb") as f:
                f.write(me)
                f.flush()
                os.fsync(f.fileno())
            self.held = True
            return
        raise CacheLockedError(f"could not take the lock {self.path}", hint="remove it if no writer is running")

    def _hint(self, holder: dict) -> str:
        if holder.get("host") == socket.gethostname():
            return "wait for it to finish, or stop it; a lock from a dead process is taken over automatically"
        # another host's process cannot be checked from here (a torchrun rank may land on another node on resume)
        return (f"wait for it to finish; if no job runs on {holder.get('host')} any more, delete {self.path} "
                "and rerun with --resume")

    def _holder(self) -> dict | None:
        try:
            d = json.loads(self.path.read_text() or "null")
            return d if isinstance(d, dict) and isinstance(d.get("pid"), int) else None
        except (OSError, json.JSONDecodeError):
            return None

    def _break_stale(self, holder: dict | None) -> None:
        # Rename first so that two processes breaking the same stale lock cannot both win.
        grave = self.path.with_name(f"{self.path.name}.stale.{os.getpid()}")
        try:
            os.replace(self.path, grave)
            os.unlink(grave)
        except FileNotFoundError:
            pass

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
