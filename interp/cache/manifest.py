"""The cache manifest: a versioned JSON document that says exactly what produced a cache and what is in it.

A shard is listed only after all of its files are complete on disk (written to a temporary file, fsynced,
renamed), and the manifest itself is replaced atomically, so a reader never sees a listed shard that is
incomplete. Shards cover consecutive token blocks; every hook's shard k holds the same rows.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.cache.checksum import validate
from interp.errors import CacheError
from interp.fileio import atomic_write_bytes

FORMAT = "interp-activation-cache"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


@dataclass
class ShardRecord:
    """One complete shard: its index, the rows and token blocks it covers, and the size and checksum of every file
    (`{"xxh3_128": hex, "bytes": n}`, or sha256 in caches written before xxh3_128: interp.cache.checksum)."""

    index: int
    rows: tuple[int, int]
    blocks: tuple[int, int]
    files: dict[str, dict[str, Any]]

    def to_json(self) -> dict:
        return {"index": self.index, "rows": list(self.rows), "blocks": list(self.blocks), "files": self.files}

    @staticmethod
    def from_json(d: dict) -> ShardRecord:
        rows, blocks = _span(d["rows"], "rows"), _span(d["blocks"], "blocks")
        index = d["index"]
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ValueError(f"shard index {index!r} is not a non-negative integer")
        files = d["files"]
        if not isinstance(files, dict):
            raise ValueError("shard files must be an object")
        for name, rec in files.items():
            if not SAFE_NAME.fullmatch(name) or name.startswith(".."):
                raise ValueError(f"shard file name {name!r} is not a plain file name inside the cache")
            try:
                validate(rec)
            except ValueError as e:
                raise ValueError(f"record of {name!r}: {e}") from None
        return ShardRecord(index, rows, blocks, dict(files))


SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")  # no separators, no absolute paths, no leading dots


def _span(value, what: str) -> tuple[int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63 for v in value)
            or value[1] < value[0]):
        raise ValueError(f"shard {what} {value!r} is not a [start, stop] pair of non-negative integers")
    return int(value[0]), int(value[1])


@dataclass
class Manifest:
    """In-memory form of manifest.json. `identity` is what a resume must match; `shards` grows as work completes."""

    identity: dict[str, Any]
    hooks: dict[str, dict[str, Any]]
    layout: dict[str, Any]
    shards: list[ShardRecord] = field(default_factory=list)
    status: str = "in_progress"
    summary: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    # id(record) -> (record, its encoded line); a listed shard record is never mutated
    _lines: dict[int, tuple[ShardRecord, str]] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def n_rows(self) -> int:
        return sum(s.rows[1] - s.rows[0] for s in self.shards)

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "status": self.status,
            "identity": self.identity,
            "hooks": self.hooks,
            "layout": self.layout,
            "n_rows": self.n_rows,
            "n_shards": len(self.shards),
            "summary": self.summary,
            "environment": self.environment,
            "shards": [s.to_json() for s in sorted(self.shards, key=lambda s: s.index)],
        }

    @staticmethod
    def from_json(doc: dict, where: str = "manifest") -> Manifest:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            fmt = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise CacheError(f"{where} is not an interp cache manifest (format={fmt!r})",
                             hint="point at a folder written by interp extract")
        version = doc.get("schema_version")
        if version != SCHEMA_VERSION:
            raise CacheError(f"{where} has schema version {version}; this interp reads version {SCHEMA_VERSION}",
                             hint="re-extract with this interp version, or install the version that wrote it")
        try:
            _check_hooks(doc["hooks"])
            _check_sections(doc)
            return Manifest(
                identity=doc["identity"], hooks=doc["hooks"], layout=doc["layout"],
                shards=[ShardRecord.from_json(s) for s in doc["shards"]], status=doc.get("status", "in_progress"),
                summary=doc.get("summary", {}), environment=doc.get("environment", {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise CacheError(f"{where} is malformed ({type(e).__name__}: {e})",
                             hint="run interp cache verify; re-extract if it is damaged") from e

    def to_bytes(self) -> bytes:
        """The manifest as written: indented JSON with one line per shard. Each shard's line is encoded once and
        kept, so appending a shard costs one line, not a re-encoding of every shard (json's indented encoder is
        pure Python and holds the GIL: 24 ms per save at 1,000 shards, on the writer thread)."""
        doc = self.to_json()
        del doc["shards"]
        head = json.dumps(doc, indent=1)
        lines = [self._shard_line(s) for s in sorted(self.shards, key=lambda s: s.index)]
        shards = "[\n" + ",\n".join(lines) + "\n ]" if lines else "[]"
        return (head[:-2] + ',\n "shards": ' + shards + "\n}").encode()

    def _shard_line(self, shard: ShardRecord) -> str:
        hit = self._lines.get(id(shard))
        if hit is None or hit[0] is not shard:
            hit = self._lines[id(shard)] = (shard, "  " + json.dumps(shard.to_json()))
        return hit[1]

    def save(self, directory: Path, name: str = MANIFEST) -> None:
        atomic_write_bytes(Path(directory) / name, self.to_bytes())
        fsync_dir(directory)

    @staticmethod
    def load(directory: Path, name: str = MANIFEST) -> Manifest:
        path = Path(directory) / name
        if not path.is_file():
            raise CacheError(f"{directory} has no {name}",
                             hint="is this an interp cache folder? (interp extract --out)")
        try:
            doc = json.loads(path.read_bytes().decode("utf-8"))
        except json.JSONDecodeError as e:
            raise CacheError(f"{path} is not valid JSON ({e.msg})", hint="the manifest is damaged; re-extract") from e
        except (UnicodeDecodeError, ValueError, RecursionError) as e:  # bad bytes, a 5000-digit number, deep nesting
            raise CacheError(f"{path} is not valid JSON ({type(e).__name__})",
                             hint="the manifest is damaged; re-extract") from None
        return Manifest.from_json(doc, str(path))


def _nonneg_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _check_sections(doc: dict) -> None:
    """The other sections must be objects of the right kinds (readers and resume use their fields)."""
    for key in ("identity", "layout", "summary", "environment"):
        if not isinstance(doc.get(key, {}), dict):
            raise ValueError(f"'{key}' must be an object")
    if not isinstance(doc["shards"], list):
        raise ValueError("'shards' must be a list")
    if not isinstance(doc.get("status", "in_progress"), str):
        raise ValueError("'status' must be a string")
    for key in ("blocks_per_shard", "rows_per_block"):
        if key in doc["layout"] and not _nonneg_int(doc["layout"][key]):
            raise ValueError(f"layout {key} {doc['layout'][key]!r} is not a non-negative integer")
    for key in ("ctx", "n_blocks"):
        if key in doc["identity"] and not _nonneg_int(doc["identity"][key]):
            raise ValueError(f"identity {key} {doc['identity'][key]!r} is not a non-negative integer")


def _check_hooks(hooks) -> None:
    """Hook specs must name a known dtype and storage format, a plain file stem and a shape of non-negative
    integers; a sparse format's own fields (k, d_sae, ...) are checked by the format."""
    from interp.cache.formats import known as known_formats
    from interp.cache.shards import STORAGE

    if not isinstance(hooks, dict):
        raise ValueError("hooks must be an object")
    for name, spec in hooks.items():
        if not isinstance(spec, dict):
            raise ValueError(f"hook {name!r}: spec must be an object")
        shape = spec.get("shape")
        if not isinstance(shape, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                  for v in shape):
            raise ValueError(f"hook {name!r}: shape {shape!r} is not a list of non-negative integers")
        if spec.get("dtype") not in STORAGE:
            raise ValueError(f"hook {name!r}: unknown dtype {spec.get('dtype')!r}")
        stem = spec.get("file_stem")
        if not isinstance(stem, str) or not SAFE_NAME.fullmatch(stem) or stem.startswith(".."):
            raise ValueError(f"hook {name!r}: file_stem {stem!r} is not a plain file name")
        fmt = known_formats().get(spec.get("format")) if isinstance(spec.get("format"), str) else None
        if fmt is None:
            raise ValueError(f"hook {name!r}: unknown storage format {spec.get('format')!r}")
        if fmt.validate is not None:
            try:
                fmt.validate(spec)
            except ValueError as e:
                raise ValueError(f"hook {name!r}: {e}") from None


def fsync_dir(directory: Path) -> None:
    """fsync a folder so that renames inside it survive a power loss."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def identity_mismatch(old: dict, new: dict) -> list[str]:
    """Keys whose values differ between two cache identities (what a resume must not change)."""
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k)]


def describe_cache(folder: Path) -> str:
    """What the cache in `folder` is, from its manifest (or the per-rank ones of an unfinished torchrun): model,
    hooks, shards, rows and status. For a refusal to write over it; an unreadable manifest is said to be one."""
    folder = Path(folder)
    names = [MANIFEST] if (folder / MANIFEST).is_file() else sorted(p.name for p in folder.glob("manifest.rank*.json"))
    try:
        found = [Manifest.load(folder, n) for n in names]
    except CacheError as e:
        return f"its manifest cannot be read: {e.message}"
    if not found:
        return "no manifest"
    shards = {s.index: s for m in found for s in m.shards}
    rows = sum(s.rows[1] - s.rows[0] for s in shards.values())
    first = found[0]
    ranks = f" in {len(names)} rank manifests" if names != [MANIFEST] else ""
    return (f"model {first.identity.get('model')}, hooks {', '.join(first.hooks) or first.identity.get('hooks')}, "
            f"{len(shards)} shards of {rows:,} rows, status {first.status}{ranks}")
