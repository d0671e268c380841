"""Feature-major (CSC) indices of a sparse hook as safetensors files, written atomically.

`build_feature_index` (interp.cache.sparse_formats) writes one beside a cache: "every token where latent j fires".
The writer returns the `{"xxh3_128", "bytes"}` record of the file it renamed into place (the same record dense
shards list in `ShardRecord.files`), and the reader can check a file against such a record. The cache's own
top-k / CSR shards are `.npy` files (interp.cache.formats), not safetensors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from interp.cache.checksum import algorithm_of, digest_bytes
from interp.cache.checksum import record as file_record
from interp.errors import CacheCorruptError, CacheError, ConfigError
from interp.fileio import atomic_write_bytes
from interp.kernels.types import FeatureMajor

FORMAT_FEATURE_MAJOR = "interp.sparse.feature_major"
SPARSE_SCHEMA_VERSION = 1
VALUE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def _value_dtype(dtype: str | torch.dtype | None, default: torch.dtype) -> torch.dtype:
    if dtype is None:
        return default
    if isinstance(dtype, torch.dtype):
        name = str(dtype).removeprefix("torch.")
    else:
        name = {"fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp32": "float32"}.get(dtype, dtype)
    if name not in VALUE_DTYPES:
        raise ConfigError(f"sparse values cannot be stored as {dtype}", hint=f"use one of {', '.join(VALUE_DTYPES)}")
    return VALUE_DTYPES[name]


def _write(path: Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict:
    """Serialise to safetensors bytes, write atomically, return the manifest file record."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    data = st_save(tensors, metadata={"interp": json.dumps(meta, sort_keys=True)})
    atomic_write_bytes(Path(path), data)
    return {**file_record(digest_bytes(data), len(data)), **{
        k: meta[k] for k in ("format", "n_rows", "nnz", "d_sae") if k in meta}}


def _read(path: Path, record: dict | None, expect: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a sparse shard, verifying size and checksum against `record` when one is given (in the algorithm the
    record names: xxh3_128, or sha256 for files written before it)."""
    path = Path(path)
    if not path.is_file():
        raise CacheCorruptError(f"sparse shard {path} is missing", hint="re-extract the cache (or --resume)")
    data = path.read_bytes()
    if record is not None:
        if len(data) != record["bytes"]:
            raise CacheCorruptError(f"sparse shard {path} has {len(data)} bytes, the manifest says {record['bytes']}",
                                    hint="run interp cache verify --repair, then interp extract --resume")
        algorithm = algorithm_of(record)
        if digest_bytes(data, algorithm) != record[algorithm]:
            raise CacheCorruptError(f"sparse shard {path} does not match its {algorithm} in the manifest",
                                    hint="run interp cache verify --repair, then interp extract --resume")
    try:
        tensors = st_load(data)
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["interp"])
    except Exception as e:  # safetensors raises several error types for damaged headers
        raise CacheCorruptError(f"{path} is not a readable interp sparse shard ({type(e).__name__}: {e})",
                                hint="run interp cache verify") from e
    if meta.get("format") != expect:
        raise CacheError(f"{path} holds format {meta.get('format')!r}, expected {expect!r}",
                         hint="read_feature_major_shard reads the files build_feature_index writes")
    if meta.get("version") != SPARSE_SCHEMA_VERSION:
        raise CacheError(f"{path} has sparse schema version {meta.get('version')}",
                         hint=f"this interp reads version {SPARSE_SCHEMA_VERSION}; re-extract")
    return tensors, meta


def write_feature_major_shard(path: str | Path, fm: FeatureMajor, *, value_dtype: str | torch.dtype | None = None,
                              extra: dict[str, Any] | None = None) -> dict:
    """Write a feature-major (CSC) index: offsets `[d_sae+1]`, token rows, values and source positions."""
    vdt = _value_dtype(value_dtype, fm.vals.dtype)
    tensors = {"offsets": fm.offsets.to(torch.int64), "rows": fm.rows.to(torch.int64), "vals": fm.vals.to(vdt),
               "flat_pos": fm.flat_pos.to(torch.int64)}
    if fm.src_crow is not None:
        tensors["src_crow"] = fm.src_crow.to(torch.int64)
    meta = {"format": FORMAT_FEATURE_MAJOR, "version": SPARSE_SCHEMA_VERSION, "d_sae": fm.d_sae,
            "n_rows": fm.n_rows, "nnz": int(fm.rows.numel()), "k": fm.k,
            "value_dtype": str(vdt).removeprefix("torch."), **(extra or {})}
    return _write(Path(path), tensors, meta)


def read_feature_major_shard(path: str | Path, record: dict | None = None) -> FeatureMajor:
    """Read a feature-major index written by write_feature_major_shard."""
    t, meta = _read(Path(path), record, FORMAT_FEATURE_MAJOR)
    return FeatureMajor(t["offsets"], t["rows"], t["vals"], t["flat_pos"], int(meta["n_rows"]), meta.get("k"),
                        t.get("src_crow"))
