"""File checksums of cache shards: which hash a new file gets, how its manifest record looks, how a file is checked.

Every shard file is listed in the manifest with a record `{algorithm: hex digest, "bytes": size}`. The checksum
guards against torn and corrupted writes (a crash mid-write, a bad disk, a truncated copy, a stray byte flipped),
not against an adversary: whoever can rewrite a shard can rewrite the manifest beside it. So a fast
non-cryptographic hash is the right tool, and new files get xxh3_128 (> 20 GB/s per core; sha256 manages about
1 GB/s, which made hashing most of a writer thread's time on a GPU host). Caches written before xxh3_128 carry
sha256 records; every verifier reads the algorithm from the record, so they keep verifying unchanged.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xxhash

# algorithm -> (hasher factory, length of its hex digest)
ALGORITHMS: dict[str, tuple[Callable[[], Any], int]] = {
    "xxh3_128": (xxhash.xxh3_128, 32),
    "sha256": (hashlib.sha256, 64),
}
DEFAULT = "xxh3_128"  # what new files are recorded with
_HEX = re.compile(r"[0-9a-f]+")
_CHUNK = 1 << 22


def accepted() -> str:
    """The accepted record keys with their digest lengths, for error messages."""
    return " or ".join(f"'{name}' ({n} lowercase hex digits)" for name, (_, n) in ALGORITHMS.items())


def hasher(algorithm: str = DEFAULT) -> Any:
    """A fresh incremental hasher (`update(buffer)`, `hexdigest()`) of `algorithm`."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown checksum algorithm {algorithm!r}; accepted: {accepted()}")
    return ALGORITHMS[algorithm][0]()


def record(digest_hex: str, size: int, algorithm: str = DEFAULT) -> dict:
    """The manifest record of one file: `{algorithm: digest_hex, "bytes": size}`."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown checksum algorithm {algorithm!r}; accepted: {accepted()}")
    return {algorithm: digest_hex, "bytes": int(size)}


def algorithm_of(rec: dict) -> str:
    """The one known checksum algorithm whose key `rec` holds; ValueError when it holds none or several."""
    found = [name for name in ALGORITHMS if isinstance(rec, dict) and name in rec]
    if len(found) != 1:
        raise ValueError(f"a file record needs exactly one checksum, {accepted()}; this one has "
                         f"{', '.join(map(repr, found)) or 'none'}")
    return found[0]


def validate(rec: Any) -> str:
    """Check a manifest file record's form (non-negative integer 'bytes', exactly one known checksum whose value is
    lowercase hex of that algorithm's length); return the algorithm. ValueError, naming the accepted keys, if not."""
    if not isinstance(rec, dict) or not isinstance(rec.get("bytes"), int) or isinstance(rec["bytes"], bool) \
            or rec["bytes"] < 0:
        raise ValueError(f"a file record needs a non-negative integer 'bytes' and one checksum, {accepted()}")
    algorithm = algorithm_of(rec)
    digest, length = rec[algorithm], ALGORITHMS[algorithm][1]
    if not isinstance(digest, str) or len(digest) != length or not _HEX.fullmatch(digest):
        raise ValueError(f"the {algorithm} of a file record must be {length} lowercase hex digits, got {digest!r}; "
                         f"accepted: {accepted()}")
    return algorithm


def digest_bytes(data: bytes | bytearray | memoryview, algorithm: str = DEFAULT) -> str:
    """Hex digest of an in-memory buffer."""
    h = hasher(algorithm)
    h.update(data)
    return h.hexdigest()


def digest_file(path: str | Path, algorithm: str = DEFAULT, chunk: int = _CHUNK) -> str:
    """Hex digest of a file, streamed through one reused buffer of `chunk` bytes."""
    h = hasher(algorithm)
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def matches(source: str | Path | bytes | bytearray | memoryview, rec: dict) -> bool:
    """Whether a file (a path) or an in-memory buffer has the size and checksum `rec` records, in the record's own
    algorithm (sha256 records of old caches are checked with sha256)."""
    algorithm = algorithm_of(rec)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file() or path.stat().st_size != rec["bytes"]:
            return False
        return digest_file(path, algorithm) == rec[algorithm]
    return memoryview(source).nbytes == rec["bytes"] and digest_bytes(source, algorithm) == rec[algorithm]
