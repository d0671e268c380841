"""The provenance table of a report page: what model, checkpoint, hooks, tokens and versions produced a result.

Results record `interp.analysis.Provenance` (model, step, data, n_tokens, hooks, cache, environment, and extra
keys); `Provenance.from_dict` also reads results saved before that contract, with older key spellings. This
module turns it into labelled rows, and when the provenance names an activation cache that still exists, adds the
cache manifest's identity (model, checkpoint, hooks, data, token count) and versions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_LABELS = (("model", "model"), ("step", "checkpoint"), ("hooks", "hooks"), ("data", "token source"),
           ("n_tokens", "token count"))
MAX_CELL = 400


def format_cell(value: Any) -> str:
    """A short plain-text form of a provenance value (lists joined, dicts as compact JSON, long text cut)."""
    if value is None:
        text = "—"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(format_cell(v) for v in value) if all(not isinstance(v, (dict, list)) for v in value) \
            else json.dumps(value, default=str)
    elif isinstance(value, dict):
        text = json.dumps(value, default=str, sort_keys=True)
    elif isinstance(value, float):
        text = f"{value:.6g}"
    else:
        text = str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _versions_text(versions: Any) -> str:
    if isinstance(versions, dict):
        return ", ".join(f"{k} {v}" for k, v in versions.items())
    return format_cell(versions)


def _environment_rows(env: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    if "versions" in env:
        rows.append((f"{prefix}versions", _versions_text(env["versions"])))
    for key, label in (("machine", "machine"), ("created", "created"), ("interp_commit", "interp commit")):
        if env.get(key) is not None:
            rows.append((f"{prefix}{label}", format_cell(env[key])))
    return rows


def read_manifest(cache: str | Path, base: Path | None = None) -> dict[str, Any] | None:
    """The manifest.json of an activation cache folder (relative: against `base`, then the cwd), or None."""
    path = Path(cache)
    candidates = [path] if path.is_absolute() or base is None else [base / path, path]  # result folder, then cwd
    manifest = next((c / "manifest.json" if c.is_dir() else c for c in candidates
                     if (c / "manifest.json").is_file() or (c.name == "manifest.json" and c.is_file())), None)
    if manifest is None:
        return None
    try:
        doc = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def manifest_rows(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows describing a cache manifest: identity (model, checkpoint, hooks, data, tokens) and its environment."""
    ident = doc.get("identity", {}) if isinstance(doc.get("identity"), dict) else {}
    rows = []
    for key, label in (("model", "model"), ("checkpoint", "checkpoint"), ("hooks", "hooks"), ("data", "token source"),
                       ("positions", "positions"), ("dtype", "dtype")):
        if key in ident:
            rows.append((f"cache {label}", format_cell(ident[key])))
    if "n_blocks" in ident and "ctx" in ident:
        rows.append(("cache token count", format_cell(int(ident["n_blocks"]) * int(ident["ctx"]))))
    if "n_rows" in doc:
        rows.append(("cache rows", format_cell(doc["n_rows"])))
    if "status" in doc:
        rows.append(("cache status", format_cell(doc["status"])))
    env = doc.get("environment")
    if isinstance(env, dict):
        rows += _environment_rows(env, prefix="cache ")
    return rows


def provenance_rows(provenance: dict[str, Any], base: Path | None = None) -> list[tuple[str, str]]:
    """Labelled (name, text) rows for a result's provenance; known fields first, then the rest, then the cache."""
    from interp.analysis import Provenance

    prov = Provenance.from_dict(provenance if isinstance(provenance, dict) else {"provenance": provenance})
    rows: list[tuple[str, str]] = [(label, format_cell(getattr(prov, key))) for key, label in _LABELS
                                   if getattr(prov, key) not in (None, "", [])]
    if prov.environment:
        rows += _environment_rows(prov.environment)
    cache_doc = None
    if prov.cache:
        rows.append(("cache", format_cell(prov.cache)))
        cache_doc = read_manifest(prov.cache, base)
    for key, value in prov.extra.items():
        rows.append((key.replace("_", " "), format_cell(value)))
    if cache_doc is not None:
        rows += manifest_rows(cache_doc)
    return rows
