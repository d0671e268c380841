"""A writer lock on a cache folder: one writer at a time; a stale lock from a dead process is taken over.

The lock is a file holding {pid, host}, which names the writer in errors. Where the file system supports it, the
holder also keeps an exclusive `flock` on the file for as long as it runs: the kernel drops it when the process
dies, and a dead holder's lock is taken over in place under that flock, so two processes can never both take it.
Where flock is not supported, a stale lock is moved aside instead (`_break_stale`), which closes the race for two
processes but not for three arriving at the same instant.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
from pathlib import Path

from interp.errors import CacheLockedError

LOCK = ".lock"
EMPTY_LOCK_GRACE_S = 10.0  # without flock: a lock file without a readable holder is a write in progress this long


def _flock(fd: int) -> bool | None:
    """Try an exclusive flock without waiting: True if taken, False if another open file holds it, None where the
    file system does not support flock."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            return None
        raise


def _flock_free(path: Path) -> bool:
    """Nobody holds the flock of the file at `path` (False where that cannot be told: no flock, no such file)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        return bool(_flock(fd))
    finally:
        os.close(fd)  # drops the flock taken just to look


def _same_file(fd: int, path: Path) -> bool:
    """The open file is still the one at `path` (not a lock that its holder unlinked meanwhile)."""
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


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
        self._fd: int | None = None

    def acquire(self) -> None:
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
                created = True
            except FileExistsError:
                try:
                    fd = os.open(self.path, os.O_RDWR)
                except FileNotFoundError:  # released meanwhile: try to create it again
                    continue
                except PermissionError:  # another user's lock: it cannot be taken over from here
                    holder = self._holder()
                    who = f"pid {holder.get('pid')} on {holder.get('host')}" if holder else "another user"
                    raise CacheLockedError(f"{self.path.parent} is locked by {who}, and this user cannot write its "
                                           f"lock file {self.path}",
                                           hint="wait for that writer, or ask its owner to remove the lock") from None
                created = False
            taken = self._take(fd, created)
            if taken is None:  # the lock file was replaced meanwhile: look again
                continue
            self._fd, self.held = fd, True
            try:
                self._refuse_other_kind()
            except BaseException:
                self.release()
                raise
            return
        raise CacheLockedError(f"could not take the lock {self.path}", hint="remove it if no writer is running")

    def _take(self, fd: int, created: bool) -> bool | None:
        """Make the open lock file ours and write our pid into it; None to retry; raises when a writer holds it."""
        locked = _flock(fd)
        for _ in range(20 if created and locked is False else 0):  # a newcomer looks at our fresh file: a moment
            time.sleep(0.01)
            if (locked := _flock(fd)) is not False:
                break
        try:
            if locked is None:  # no flock here: the file alone is the lock
                if not created:
                    holder = self._holder()
                    if not self._stale(holder):
                        self._refuse(holder)
                    os.close(fd)
                    self._break_stale(holder)
                    return None
            elif not locked or not _same_file(fd, self.path):
                if not locked:
                    self._refuse(self._holder())
                os.close(fd)
                return None
            elif not created and not self._stale(self._holder(), unflocked=True):
                self._refuse(self._holder())  # an empty lock still being written, or another host's
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
            os.fsync(fd)
            return True
        except BaseException:
            with contextlib.suppress(OSError):
                if created and _same_file(fd, self.path):  # a file we created and could not keep: leave none
                    os.unlink(self.path)
                os.close(fd)
            raise

    def _refuse(self, holder: dict | None) -> None:
        who = f"pid {holder.get('pid')} on {holder.get('host')}" if holder else "a writer that is starting"
        raise CacheLockedError(f"{self.path.parent} is being written by {who}",
                               hint=self._hint(holder or {"host": socket.gethostname()}))

    def _refuse_other_kind(self) -> None:
        """A single-process writer (.lock) and a torchrun job's ranks (.lock.rankN) exclude each other too: an
        `interp extract --overwrite` started by mistake during a torchrun job would otherwise wipe its shards."""
        others = ([p for p in self.path.parent.glob(LOCK + ".rank*") if not p.name.count(".stale.")]
                  if self.path.name == LOCK else [self.path.with_name(LOCK)])
        for other in others:
            holder = CacheLock._read(other)
            if other.exists() and not self._stale(holder, other, unflocked=_flock_free(other)):
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

    def _stale(self, holder: dict | None, path: Path | None = None, unflocked: bool = False) -> bool:
        """A lock whose process died on this host, or an unreadable one old enough not to be mid-write. `unflocked`:
        nobody holds the file's flock, so its holder is gone whatever process now has its pid (a restarted
        container reuses pids)."""
        if holder is None:
            if unflocked:  # its creator holds the flock before it writes: nobody holds it, so the creator died
                return True  # (or has not taken it yet, and will then fail to take it and be refused)
            try:
                return time.time() - (path or self.path).stat().st_mtime > EMPTY_LOCK_GRACE_S
            except FileNotFoundError:
                return True
        if holder.get("host") != socket.gethostname():
            return False
        return unflocked or not _alive(holder["pid"])

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
        """Unlink the lock file, then drop the flock (closing the file): a process that opened the old file and
        gets the flock after us sees that it is no longer the file at the path, and retries."""
        if self.held:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            if self._fd is not None:
                os.close(self._fd)
            self._fd, self.held = None, False

    def __enter__(self) -> CacheLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
