"""Shard files: `.npy` arrays written atomically with their checksum (interp.cache.checksum), memory-mapped on read.

bfloat16 has no numpy dtype, so bf16 tensors are stored as int16 bit patterns and viewed back on read;
the manifest records the logical dtype.
"""

from __future__ import annotations

import io
import re
import threading
from pathlib import Path

import numpy as np
import torch

from interp.cache.checksum import DEFAULT, algorithm_of, digest_file, hasher
from interp.cache.checksum import record as file_record
from interp.errors import CacheCorruptError, CacheError
from interp.fileio import atomic_file

STORAGE = {  # logical dtype -> (torch dtype, numpy storage dtype)
    "float32": (torch.float32, np.dtype("<f4")),
    "float16": (torch.float16, np.dtype("<f2")),
    "bfloat16": (torch.bfloat16, np.dtype("<i2")),
    "float64": (torch.float64, np.dtype("<f8")),
    "int32": (torch.int32, np.dtype("<i4")),
    "int64": (torch.int64, np.dtype("<i8")),
    "uint16": (torch.uint16, np.dtype("<u2")),
    "uint8": (torch.uint8, np.dtype("u1")),
}
ALIASES = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16", "float": "float32",
           "fp64": "float64", "double": "float64"}


def dtype_name(dtype: str | torch.dtype) -> str:
    """Canonical logical dtype name ('float32', 'bfloat16', ...)."""
    if isinstance(dtype, torch.dtype):
        for name, (td, _) in STORAGE.items():
            if td == dtype:
                return name
        raise CacheError(f"dtype {dtype} cannot be stored", hint=f"use one of {', '.join(STORAGE)}")
    name = ALIASES.get(str(dtype), str(dtype))
    if name not in STORAGE:
        raise CacheError(f"unknown storage dtype '{dtype}'", hint=f"use one of {', '.join(STORAGE)}")
    return name


def to_storage(x: torch.Tensor, dtype: str) -> np.ndarray:
    """Tensor -> numpy array in the storage dtype (bf16 as int16 bits)."""
    td, _ = STORAGE[dtype]
    x = x.detach().to("cpu", td).contiguous()
    if dtype == "bfloat16":
        x = x.view(torch.int16)
    return x.numpy()


def from_storage(a: np.ndarray, dtype: str) -> torch.Tensor:
    """Numpy (possibly memory-mapped) -> tensor in the logical dtype, without copying when possible."""
    if not a.flags.writeable:
        a = np.array(a)  # torch needs writable memory; this is the single copy out of the page cache
    t = torch.from_numpy(a)
    return t.view(torch.bfloat16) if dtype == "bfloat16" else t


def _npy_header(array: np.ndarray) -> bytes | None:
    """The bytes `np.save` puts before a C-contiguous array's data (format 1.0), or None where 1.0 cannot hold it."""
    buf = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(array))
    except ValueError:  # header over 64 KiB: numpy would pick format 2.0
        return None
    return buf.getvalue()


def write_npy_atomic(path: Path, array: np.ndarray, chunk: int = 1 << 22) -> dict:
    """Write `array` to `path` via temp file + fsync + rename; return the file's manifest record
    ({"xxh3_128": hex, "bytes": n}, see interp.cache.checksum).

    The file is `np.save`'s bytes. The data goes out straight from the array's memory in 4 MiB pieces, each hashed
    and written while it is in cache (numpy's own writer copies every piece through `tobytes` first)."""
    path = Path(path)
    array = np.require(array, requirements="C")  # keeps 0-d arrays 0-d (ascontiguousarray makes them 1-d)
    plain = not array.dtype.hasobject and array.dtype.names is None
    header = _npy_header(array) if plain else None
    h, size = hasher(DEFAULT), 0
    with atomic_file(path) as f:
        if header is None:  # rare layouts (structured dtypes, huge headers): numpy's own writer, in memory
            buf = io.BytesIO()
            np.lib.format.write_array(buf, array, allow_pickle=False)
            pieces = [buf.getbuffer()]
        else:
            data = array.reshape(-1).view(np.uint8)  # raw bytes of any dtype (datetime64 has no buffer format)
            pieces = [memoryview(header), *(data[i: i + chunk] for i in range(0, len(data), chunk))]
        for piece in pieces:
            h.update(piece)
            size += f.write(piece)
    return file_record(h.hexdigest(), size, DEFAULT)


def check_file(path: Path, record: dict, full: bool = True) -> None:
    """Raise CacheCorruptError naming the file when its size (and, if full, its checksum, in the algorithm the record
    names: xxh3_128, or sha256 for caches written before it) differ from the manifest."""
    if not path.is_file():
        raise CacheCorruptError(f"shard file {path} is missing",
                                hint="run interp cache verify --repair, then interp extract --resume")
    size = path.stat().st_size
    if size != record["bytes"]:
        raise CacheCorruptError(f"shard file {path} has {size} bytes, the manifest says {record['bytes']} (truncated?)",
                                hint="run interp cache verify --repair, then interp extract --resume")
    algorithm = algorithm_of(record) if full else None
    if algorithm is not None and digest_file(path, algorithm) != record[algorithm]:
        raise CacheCorruptError(f"shard file {path} does not match its {algorithm} in the manifest (corrupted bytes)",
                                hint="run interp cache verify --repair, then interp extract --resume")


# numpy parses an .npy header with ast.literal_eval. CPython 3.11 keeps the AST builder's recursion counter per
# interpreter, not per thread, so reader threads parsing headers at once can fail with "SystemError: AST constructor
# recursion depth mismatch" (python/cpython#106905; it broke a four-thread reader test here). Headers are parsed one
# at a time; the memory maps themselves are read concurrently.
_HEADER_LOCK = threading.Lock()


def open_npy(path: Path) -> np.ndarray:
    """Memory-map an .npy file read-only."""
    try:
        with _HEADER_LOCK:
            return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise CacheCorruptError(f"shard file {path} is not a readable .npy array ({e})",
                                hint="run interp cache verify") from e


def file_stem(hook: str) -> str:
    """A file-name-safe stem for a hook name (hook names are already mostly safe: dots, digits, letters)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", hook)


def shard_file(stem: str, index: int) -> str:
    return f"{stem}.{index:05d}.npy"
