"""Sparse shard files: top-k rows, CSR rows and feature-major (CSC) indices as safetensors, written atomically.

Pure functions that plug into the cache's manifest scheme: every writer returns the `{"sha256", "bytes"}`
record of the file it renamed into place (the same record dense shards list in `ShardRecord.files`), and
every reader can check a file against such a record. Latent ids are stored as uint16 when they fit
(d_sae ≤ 65536, the delphi trick) and as int32 otherwise; readers return int32 ids.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from interp.errors import CacheCorruptError, CacheError, ConfigError
from interp.fileio import atomic_write_bytes
from interp.kernels.types import FeatureMajor, SparseActs

FORMAT_TOPK = "interp.sparse.topk"
FORMAT_CSR = "interp.sparse.csr"
FORMAT_FEATURE_MAJOR = "interp.sparse.feature_major"
SPARSE_SCHEMA_VERSION = 1
VALUE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def index_dtype_for(d_sae: int) -> torch.dtype:
    """uint16 when every id in [0, d_sae) fits in 16 bits, else int32."""
    return torch.uint16 if d_sae <= 1 << 16 else torch.int32


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
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), **{
        k: meta[k] for k in ("format", "n_rows", "nnz", "d_sae") if k in meta}}


def _read(path: Path, record: dict | None, expect: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a sparse shard, verifying size and sha256 against `record` when one is given."""
    path = Path(path)
    if not path.is_file():
        raise CacheCorruptError(f"sparse shard {path} is missing", hint="re-extract the cache (or --resume)")
    data = path.read_bytes()
    if record is not None:
        if len(data) != record["bytes"]:
            raise CacheCorruptError(f"sparse shard {path} has {len(data)} bytes, the manifest says {record['bytes']}",
                                    hint="run interp cache verify --repair, then interp extract --resume")
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            raise CacheCorruptError(f"sparse shard {path} does not match its sha256 in the manifest",
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
                         hint="use read_sparse_shard for top-k/CSR files and read_feature_major_shard for CSC")
    if meta.get("version") != SPARSE_SCHEMA_VERSION:
        raise CacheError(f"{path} has sparse schema version {meta.get('version')}",
                         hint=f"this interp reads version {SPARSE_SCHEMA_VERSION}; re-extract")
    return tensors, meta


def write_sparse_shard(path: str | Path, s: SparseActs, *, value_dtype: str | torch.dtype | None = None,
                       index_dtype: torch.dtype | None = None, extra: dict[str, Any] | None = None) -> dict:
    """Write top-k or CSR latents to `path`; returns {"sha256", "bytes", "format", "n_rows", "nnz", "d_sae"}."""
    s.validate(deep=True)
    vdt = _value_dtype(value_dtype, s.val.dtype)
    idt = index_dtype or index_dtype_for(s.d_sae)
    if idt == torch.uint16 and s.d_sae > 1 << 16:
        raise ConfigError(f"d_sae={s.d_sae} does not fit uint16 ids", hint="use index_dtype=torch.int32")
    tensors = {"idx": s.idx.to(torch.int32).to(idt), "val": s.val.to(vdt)}
    meta: dict[str, Any] = {"format": FORMAT_CSR if s.is_csr else FORMAT_TOPK, "version": SPARSE_SCHEMA_VERSION,
                            "d_sae": s.d_sae, "n_rows": s.n_rows, "nnz": s.nnz, "k": s.k,
                            "index_dtype": str(idt).removeprefix("torch."),
                            "value_dtype": str(vdt).removeprefix("torch."), **(extra or {})}
    if s.is_csr:
        tensors["crow"] = s.crow.to(torch.int64)
    if s.token_index is not None:
        tensors["token_index"] = s.token_index.to(torch.int64)
    return _write(Path(path), tensors, meta)


def write_topk_shard(path: str | Path, indices: Tensor, values: Tensor, d_sae: int, **kw: Any) -> dict:
    """Write fixed top-k latents (`indices`/`values` `[N, k]`); see write_sparse_shard for options."""
    return write_sparse_shard(path, SparseActs(indices, values, d_sae), **kw)


def write_csr_shard(path: str | Path, crow: Tensor, indices: Tensor, values: Tensor, d_sae: int,
                    threshold: float | None = None, **kw: Any) -> dict:
    """Write variable-length (threshold) latents as CSR; the threshold is recorded in the file metadata."""
    extra = {**kw.pop("extra", {}), **({"threshold": float(threshold)} if threshold is not None else {})}
    return write_sparse_shard(path, SparseActs(indices, values, d_sae, crow), extra=extra, **kw)


def read_sparse_shard(path: str | Path, record: dict | None = None, *, device: str | torch.device = "cpu",
                      value_dtype: str | torch.dtype | None = None) -> SparseActs:
    """Read a top-k or CSR shard as SparseActs with int32 ids (checked against `record` if given)."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            fmt = json.loads((f.metadata() or {}).get("interp", "{}")).get("format")
    except Exception:  # missing/damaged files get their typed error from _read
        fmt = FORMAT_TOPK
    tensors, meta = _read(path, record, FORMAT_CSR if fmt == FORMAT_CSR else FORMAT_TOPK)
    val = tensors["val"]
    s = SparseActs(tensors["idx"].to(torch.int32), val.to(_value_dtype(value_dtype, val.dtype)), int(meta["d_sae"]),
                   tensors.get("crow"), tensors.get("token_index"))
    if s.n_rows != meta["n_rows"] or s.nnz != meta["nnz"]:
        raise CacheCorruptError(f"{path}: tensor shapes disagree with its metadata", hint="re-extract the shard")
    return s.to(device) if torch.device(device).type != "cpu" else s


def sparse_shard_meta(path: str | Path) -> dict[str, Any]:
    """The metadata header of a sparse shard (format, d_sae, n_rows, nnz, k, dtypes, threshold) without the data."""
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("interp", "{}"))


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


def storage_bytes(s: SparseActs, value_dtype: torch.dtype = torch.bfloat16,
                  index_dtype: torch.dtype | None = None) -> int:
    """Bytes of idx + val (+ crow) as stored: the numerator of the dense/sparse storage ratio."""
    idt = index_dtype or index_dtype_for(s.d_sae)
    per = torch.empty(0, dtype=idt).element_size() + torch.empty(0, dtype=value_dtype).element_size()
    return s.nnz * per + (8 * (s.n_rows + 1) if s.is_csr else 0)
