"""Sparse storage formats for the activation cache: "topk" (fixed k per row) and "threshold" (CSR), on tensors only.

The codecs here turn a shard's `[rows, d]` tensor into role arrays and back; `interp.cache.formats` lists them in
its one table of formats, so `interp.extract` writes them with the same manifest, atomic `.npy` shards, checksum
records and resume as dense hooks, and `CacheReader.read` densifies them on demand. `read_sparse` /
`iter_sparse_batches` return `SparseActs` without densifying.

A hook's format spec (ExtractConfig.formats[hook]) is built by `sparse_spec`:
    {"format": "topk", "dtype": "bfloat16", "by": "abs", "k": 32, "d_sae": 512, "shape": [512], ...}
The codecs know nothing of SAEs: storing an SAE's latents is a transform on the capture side (`interp.encode`,
which adds "sae" to the spec) that runs before the rows reach these codecs. Rows are kept by magnitude
("by": "abs") or by value ("by": "value", what SAE latents use). Latent ids are uint16 when d_sae ≤ 65536, else
int32; values are float16/bfloat16/float32.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interp.cache.shards import STORAGE, dtype_name, from_storage, to_storage
from interp.errors import CacheError, ConfigError
from interp.kernels.types import FeatureMajor, SparseActs

SPARSE_FORMATS = ("topk", "threshold")
VALUE_TORCH = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def sparse_spec(kind: str, *, d: int | None = None, k: int | None = None, threshold: float | None = None,
                value_dtype: str = "bfloat16", by: str = "abs") -> dict[str, Any]:
    """The per-hook format spec for ExtractConfig.formats: `d` is the width of the stored rows (the hook's, or an
    SAE's d_sae: `interp.encode.sparse_spec` builds SAE specs on top of this one)."""
    if kind not in SPARSE_FORMATS:
        raise ConfigError(f"unknown sparse format {kind!r}", hint=f"use one of {', '.join(SPARSE_FORMATS)}")
    vdt = dtype_name(value_dtype)
    if vdt not in ("float16", "bfloat16", "float32"):
        raise ConfigError(f"sparse values cannot be stored as {value_dtype}", hint="use bfloat16 or float16")
    if d is None:
        raise ConfigError("sparse storage of raw activations needs the hook width", hint="pass d=...")
    d_sae = int(d)
    spec: dict[str, Any] = {"format": kind, "dtype": vdt, "by": by}
    if kind == "topk":
        if k is None:
            raise ConfigError("--sparse topk needs --k, the number of latents kept per row",
                              hint=f"pass --k between 1 and {d_sae} (e.g. the SAE's k)")
        if not 1 <= int(k) <= d_sae:
            raise ConfigError(f"--sparse topk needs 1 ≤ k ≤ {d_sae}, got {k}", hint="pass --k (e.g. the SAE's k)")
        spec["k"] = int(k)
    else:
        spec["threshold"] = float(threshold or 0.0)
    spec.update(d_sae=d_sae, shape=[d_sae], index_dtype="uint16" if d_sae <= 1 << 16 else "int32")
    return spec


def validate_spec(spec: dict) -> None:
    """A sparse spec read from a manifest: raise ValueError unless its fields are consistent (what readers use)."""
    def posint(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    d_sae = spec.get("d_sae")
    if not posint(d_sae) or spec.get("shape") != [d_sae]:
        raise ValueError(f"d_sae {d_sae!r} must be a positive integer equal to the shape {spec.get('shape')!r}")
    if spec.get("dtype") not in VALUE_TORCH:
        raise ValueError(f"sparse values cannot have dtype {spec.get('dtype')!r}")
    limit = {"uint16": 1 << 16, "int32": (1 << 31) - 1}.get(spec.get("index_dtype"))
    if limit is None or d_sae > limit:
        raise ValueError(f"index_dtype {spec.get('index_dtype')!r} cannot index {d_sae} latents")
    if spec["format"] == "topk" and not (posint(spec.get("k")) and spec["k"] <= d_sae):
        raise ValueError(f"top-k needs 1 <= k <= d_sae, got k={spec.get('k')!r}")
    if spec["format"] == "threshold" and (not isinstance(spec.get("threshold"), (int, float))
                                          or isinstance(spec.get("threshold"), bool)):
        raise ValueError(f"threshold {spec.get('threshold')!r} is not a number")


def check_arrays(arrays: dict[str, np.ndarray], spec: dict, n_rows: int) -> None:
    """A shard's sparse arrays agree with the manifest: row count, k, dtypes, CSR offsets and latent ids < d_sae."""
    idx, val = arrays["idx"], arrays["val"]
    id_dtype = np.dtype("<u2") if spec["index_dtype"] == "uint16" else np.dtype("<i4")
    if idx.dtype != id_dtype or val.dtype != STORAGE[spec["dtype"]][1] or idx.shape != val.shape:
        raise ValueError(f"holds ids {idx.dtype} {list(idx.shape)} and values {val.dtype} {list(val.shape)}, "
                         f"the manifest says {spec['index_dtype']} and {spec['dtype']}")
    if spec["format"] == "topk":
        if idx.shape != (n_rows, spec["k"]):
            raise ValueError(f"holds top-k ids of shape {list(idx.shape)}, the manifest says {[n_rows, spec['k']]}")
    else:
        crow = np.asarray(arrays["crow"])
        if (crow.shape != (n_rows + 1,) or crow.dtype.kind != "i" or idx.ndim != 1 or crow[0] != 0
                or crow[-1] != len(idx) or bool((np.diff(crow) < 0).any())):
            raise ValueError(f"holds CSR offsets {crow.dtype} {list(crow.shape)} that do not describe {n_rows} rows "
                             f"of {len(idx)} entries")
    ids = np.asarray(idx)
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= spec["d_sae"]):
        raise ValueError(f"holds latent ids outside [0, {spec['d_sae']})")


def _rows_2d(x: torch.Tensor) -> torch.Tensor:
    """A shard's rows as `[rows, width]` (an SAE transform on the capture side has already run)."""
    return x.reshape(x.shape[0], -1)


def _ids(idx: torch.Tensor, spec: dict) -> np.ndarray:
    dt = torch.uint16 if spec["index_dtype"] == "uint16" else torch.int32
    return idx.to(torch.int32).to(dt).contiguous().numpy()


def _stored_values(val: torch.Tensor, spec: dict) -> np.ndarray:
    """Values in the storage dtype, refusing NaN/inf after the cast (float16 overflows past 65504; an SAE can
    emit NaN) as dense hooks are refused, before anything of the shard is written."""
    v = val.to(STORAGE[spec["dtype"]][0])
    if not bool(torch.isfinite(v).all()):
        kind = "NaN" if bool(torch.isnan(v).any()) else "inf"
        raise CacheError(f"{kind} in the {spec['format']} values stored as {spec['dtype']} (largest finite |value| "
                         f"{float(val.float().abs().nan_to_num(0, posinf=0).max()):.4g}); nothing of this shard was "
                         "written", hint="store values as bfloat16 or float32, or check the model / SAE; earlier "
                         "shards stay valid")
    return to_storage(v, spec["dtype"])


# Each codec is split in two so that extraction can run the selection where the rows are (the GPU) and copy only
# the kept entries to the host: `select` (any device) keeps a batch's entries as tensors, `pack` (host) joins the
# batches of a shard into the stored arrays. On the CPU `encode = pack([select(x)])` is the same bytes either way.

def topk_select(x: torch.Tensor, spec: dict) -> dict[str, torch.Tensor]:
    """Keep the k largest entries of each row (by |a| or by value, spec["by"]): ids `[rows, k]` int32, values."""
    a = _rows_2d(x)
    score = a.abs() if spec.get("by") == "abs" else a
    idx = torch.topk(score, spec["k"], dim=-1, sorted=False).indices
    return {"idx": idx.to(torch.int32), "val": a.gather(1, idx)}


def csr_select(x: torch.Tensor, spec: dict) -> dict[str, torch.Tensor]:
    """Keep the entries with |a| > spec["threshold"] as CSR: row offsets `[rows + 1]`, ids int32, values."""
    a = _rows_2d(x)
    mask = a.abs() > spec["threshold"]
    crow = torch.zeros(a.shape[0] + 1, dtype=torch.int64, device=a.device)
    torch.cumsum(mask.sum(1), 0, out=crow[1:])
    _, cols = mask.nonzero(as_tuple=True)
    return {"crow": crow, "idx": cols.to(torch.int32), "val": a[mask]}


def pack(parts: list[dict[str, torch.Tensor]], spec: dict) -> dict[str, np.ndarray]:
    """Join the selected entries of a shard's batches (host tensors, in row order) into its stored arrays; CSR
    offsets of later batches are shifted by the entries before them."""
    out = {"idx": _ids(torch.cat([p["idx"] for p in parts]), spec),
           "val": _stored_values(torch.cat([p["val"] for p in parts]), spec)}
    if "crow" in parts[0]:
        crows, base = [parts[0]["crow"][:1]], 0
        for p in parts:
            crows.append(p["crow"][1:] + base)
            base += int(p["crow"][-1])
        out = {"crow": torch.cat(crows).numpy(), **out}
    return out


def topk_encode(x: torch.Tensor, spec: dict) -> dict[str, np.ndarray]:
    """Top-k ids `[rows, k]` and values of a shard's rows, as stored."""
    return pack([topk_select(x, spec)], spec)


def csr_encode(x: torch.Tensor, spec: dict) -> dict[str, np.ndarray]:
    """CSR offsets, ids and values of a shard's rows above the threshold, as stored."""
    return pack([csr_select(x, spec)], spec)


def _topk_rows(arrays: dict[str, np.ndarray], spec: dict, a: int, b: int) -> SparseActs:
    idx = torch.from_numpy(np.array(arrays["idx"][a:b])).to(torch.int32)
    return SparseActs(idx, from_storage(np.array(arrays["val"][a:b]), spec["dtype"]), int(spec["d_sae"]))


def _csr_rows(arrays: dict[str, np.ndarray], spec: dict, a: int, b: int) -> SparseActs:
    crow = torch.from_numpy(np.array(arrays["crow"][a: b + 1]))
    lo, hi = int(crow[0]), int(crow[-1])
    idx = torch.from_numpy(np.array(arrays["idx"][lo:hi])).to(torch.int32)
    val = from_storage(np.array(arrays["val"][lo:hi]), spec["dtype"])
    return SparseActs(idx, val, int(spec["d_sae"]), crow - lo)


_ROWS = {"topk": _topk_rows, "threshold": _csr_rows}


def _topk_gather(arrays: dict[str, np.ndarray], spec: dict, local: np.ndarray) -> SparseActs:
    idx = torch.from_numpy(np.asarray(arrays["idx"][local])).to(torch.int32)
    return SparseActs(idx, from_storage(np.asarray(arrays["val"][local]), spec["dtype"]), int(spec["d_sae"]))


def _csr_gather(arrays: dict[str, np.ndarray], spec: dict, local: np.ndarray) -> SparseActs:
    """CSR rows `local` (any order, repeats): read only their entries from the memory-mapped idx/val."""
    crow = np.asarray(arrays["crow"])
    starts, lens = crow[local], crow[local + 1] - crow[local]
    new_crow = np.zeros(len(local) + 1, dtype=np.int64)
    np.cumsum(lens, out=new_crow[1:])
    flat = np.arange(int(new_crow[-1]), dtype=np.int64) + np.repeat(starts - new_crow[:-1], lens)
    idx = torch.from_numpy(np.asarray(arrays["idx"][flat])).to(torch.int32)
    val = from_storage(np.asarray(arrays["val"][flat]), spec["dtype"])
    return SparseActs(idx, val, int(spec["d_sae"]), torch.from_numpy(new_crow))


_GATHER = {"topk": _topk_gather, "threshold": _csr_gather}


def _dense_rows(kind: str):
    def rows(arrays: dict[str, np.ndarray], spec: dict, a: int, b: int) -> torch.Tensor:
        return _ROWS[kind](arrays, spec, a, b).to_dense()

    def whole(arrays: dict[str, np.ndarray], spec: dict) -> torch.Tensor:
        n = len(arrays["idx"]) if kind == "topk" else len(arrays["crow"]) - 1
        return rows(arrays, spec, 0, n)

    def gather(arrays: dict[str, np.ndarray], spec: dict, local: np.ndarray) -> torch.Tensor:
        return _GATHER[kind](arrays, spec, local).to_dense()

    return whole, rows, gather


def codecs(kind: str) -> dict[str, Callable]:
    """The keyword arguments of `interp.cache.formats.Format` for sparse format `kind` (its table lists them)."""
    whole, rows, gather = _dense_rows(kind)
    return {"encode": topk_encode if kind == "topk" else csr_encode, "decode": whole,
            "select": topk_select if kind == "topk" else csr_select, "pack": pack,
            "roles": ("idx", "val") if kind == "topk" else ("crow", "idx", "val"), "decode_rows": rows,
            "gather_rows": gather, "validate": validate_spec, "check_arrays": check_arrays}


def sparse_rows(arrays: dict[str, np.ndarray], spec: dict, a: int, b: int) -> SparseActs:
    """Rows [a, b) of one shard's role arrays of a sparse hook as SparseActs, without densifying."""
    return _ROWS[spec["format"]](arrays, spec, a, b)


# ---------------------------------------------------------------------------------------------- sparse reading
def read_sparse(reader: Any, hook: str, start: int = 0, stop: int | None = None) -> SparseActs:
    """Rows [start, stop) of a sparse hook as SparseActs (CSR rows are concatenated, top-k rows stacked)."""
    spec = reader.spec(hook)
    kind = spec.get("format")
    if kind not in SPARSE_FORMATS:
        raise CacheError(f"hook '{hook}' is stored as {kind!r}, not sparsely", hint="use reader.read for dense hooks")
    stop = reader.n_rows if stop is None else min(stop, reader.n_rows)
    if not 0 <= start <= stop:
        raise ConfigError(f"row range [{start}, {stop}) is outside [0, {reader.n_rows})")
    parts = []
    for i in range(len(reader.shards)):
        lo, hi = int(reader.offsets[i]), int(reader.offsets[i + 1])
        if hi <= start or lo >= stop:
            continue
        arrays = reader.shard_arrays(hook, i)  # verified, memory-mapped role arrays of this shard
        parts.append(_ROWS[kind](arrays, spec, max(start, lo) - lo, min(stop, hi) - lo))
    if not parts:
        vdt = VALUE_TORCH[spec["dtype"]]
        if kind == "topk":
            k = int(spec["k"])
            return SparseActs(torch.zeros(0, k, dtype=torch.int32), torch.zeros(0, k, dtype=vdt), int(spec["d_sae"]))
        return SparseActs(torch.zeros(0, dtype=torch.int32), torch.zeros(0, dtype=vdt), int(spec["d_sae"]),
                          torch.zeros(1, dtype=torch.int64))
    return parts[0] if len(parts) == 1 else concat(parts)


def gather_sparse(reader: Any, hook: str, rows: np.ndarray) -> SparseActs:
    """Arbitrary rows (any order, repeats) of a sparse hook as SparseActs, without densifying: only those rows'
    entries leave the memory maps (what a dashboard needs for the tokens around its examples)."""
    spec = reader.spec(hook)
    kind = spec.get("format")
    if kind not in SPARSE_FORMATS:
        raise CacheError(f"hook '{hook}' is stored as {kind!r}, not sparsely", hint="use reader.gather for dense hooks")
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if rows.size and (rows.min() < 0 or rows.max() >= reader.n_rows):
        raise ConfigError(f"row index out of range [0, {reader.n_rows})")
    order = np.argsort(rows, kind="stable")
    srt = rows[order]
    shard_of = np.searchsorted(reader.offsets, srt, side="right") - 1
    parts = [_GATHER[kind](reader.shard_arrays(hook, int(i)), spec, srt[shard_of == i] - reader.offsets[i])
             for i in np.unique(shard_of)]
    if not parts:
        return read_sparse(reader, hook, 0, 0)
    from interp.kernels.gather import gather_tokens

    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    return gather_tokens(concat(parts) if len(parts) > 1 else parts[0], torch.from_numpy(inverse))


def concat(parts: list[SparseActs]) -> SparseActs:
    """Stack row blocks of one format."""
    if parts[0].is_csr:
        shifts = np.cumsum([0] + [p.nnz for p in parts[:-1]])
        crow = torch.cat([parts[0].crow[:1]] + [p.crow[1:] + int(s) for p, s in zip(parts, shifts)])
        return SparseActs(torch.cat([p.idx for p in parts]), torch.cat([p.val for p in parts]), parts[0].d_sae, crow)
    return SparseActs(torch.cat([p.idx for p in parts]), torch.cat([p.val for p in parts]), parts[0].d_sae)


def iter_sparse_batches(reader: Any, hook: str, batch_size: int = 65536, start: int = 0,
                        stop: int | None = None) -> Iterator[SparseActs]:
    """Consecutive SparseActs batches of `batch_size` rows (feed them to kernels.stream_to_device on a GPU)."""
    if batch_size <= 0:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    stop = reader.n_rows if stop is None else min(stop, reader.n_rows)
    for b0 in range(start, stop, batch_size):
        yield read_sparse(reader, hook, b0, min(b0 + batch_size, stop))


# ---------------------------------------------------------------------------------------------- feature index
def build_feature_index(reader: Any, hook: str, path: str | Path | None = None) -> tuple[FeatureMajor, dict]:
    """Feature-major (CSC) index of a sparse hook over the whole cache: "every token where latent j fires".

    Written as a safetensors file (default: beside the cache, `<hook>.feature_major.safetensors`, not listed
    in the manifest); returns the index and the file's {"xxh3_128", "bytes", ...} record. Needs the hook's
    nonzeros in memory (N·k·18 bytes for the int64 rows/positions).
    """
    from interp.cache.sparse import write_feature_major_shard
    from interp.kernels.gather import to_feature_major

    spec = reader.spec(hook)
    fm = to_feature_major(read_sparse(reader, hook))
    path = Path(path) if path is not None else Path(reader.path) / f"{spec['file_stem']}.feature_major.safetensors"
    record = write_feature_major_shard(path, fm, extra={"hook": hook, "cache_rows": int(reader.n_rows)})
    return fm, record
