"""The cache manifest: a versioned JSON document that says exactly what produced a cache and what is in it.

A shard is listed only after all of its files are complete on disk (written to a temporary file, fsynced,
renamed), and the manifest itself is replaced atomically, so a reader never sees a listed shard that is
incomplete. Shards cover consecutive token blocks; every hook's shard k holds the same rows.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.errors import CacheError
from interp.results import atomic_write_bytes

FORMAT = "interp-activation-cache"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


@dataclass
class ShardRecord:
    """One complete shard: its index, the rows and token blocks it covers, and sha256/size of every file."""

    index: int
    rows: tuple[int, int]
    blocks: tuple[int, int]
    files: dict[str, dict[str, Any]]

    def to_json(self) -> dict:
        return {"index": self.index, "rows": list(self.rows), "blocks": list(self.blocks), "files": self.files}

    @staticmethod
    def from_json(d: dict) -> ShardRecord:
        return ShardRecord(int(d["index"]), tuple(d["rows"]), tuple(d["blocks"]), dict(d["files"]))


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
        if doc.get("format") != FORMAT:
            raise CacheError(f"{where} is not an interp cache manifest (format={doc.get('format')!r})",
                             hint="point at a folder written by interp extract")
        version = doc.get("schema_version")
        if version != SCHEMA_VERSION:
            raise CacheError(f"{where} has schema version {version}; this interp reads version {SCHEMA_VERSION}",
                             hint="re-extract with this interp version, or install the version that wrote it")
        try:
            return Manifest(
                identity=doc["identity"], hooks=doc["hooks"], layout=doc["layout"],
                shards=[ShardRecord.from_json(s) for s in doc["shards"]], status=doc.get("status", "in_progress"),
                summary=doc.get("summary", {}), environment=doc.get("environment", {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise CacheError(f"{where} is malformed ({type(e).__name__}: {e})",
                             hint="run interp cache verify; re-extract if it is damaged") from e

    def save(self, directory: Path, name: str = MANIFEST) -> None:
        atomic_write_bytes(Path(directory) / name, json.dumps(self.to_json(), indent=1).encode())
        fsync_dir(directory)

    @staticmethod
    def load(directory: Path, name: str = MANIFEST) -> Manifest:
        path = Path(directory) / name
        if not path.is_file():
            raise CacheError(f"{directory} has no {name}",
                             hint="is this an interp cache folder? (interp extract --out)")
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise CacheError(f"{path} is not valid JSON ({e.msg})", hint="the manifest is damaged; re-extract") from e
        return Manifest.from_json(doc, str(path))


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
