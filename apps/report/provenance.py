"""The provenance table of a report page: what model, checkpoint, hooks, tokens and versions produced a result.

Analyses record provenance in slightly different shapes (versions at the top level or under "environment",
"step" or "checkpoint", "n_tokens" or "n_heldout_tokens"); this module maps the known spellings to one set of
labelled rows, appends everything else it finds, and, when the provenance names an activation cache that still
exists, adds the cache manifest's identity (model, checkpoint, hooks, data, token count) and versions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# label -> provenance keys that may hold it, first match wins
_KNOWN: list[tuple[str, tuple[str, ...]]] = [
    ("model", ("model", "model_id", "model_name", "model_source")),
    ("checkpoint", ("checkpoint", "step", "checkpoints", "steps")),
    ("hooks", ("hooks", "hook", "hook_names")),
    ("token source", ("token_source", "tokens_source", "source", "data", "dataset", "corpus")),
    ("token count", ("n_tokens", "n_heldout_tokens", "tokens", "token_count")),
]
_CACHE_KEYS = ("cache", "cache_dir", "cache_path", "activation_cache")
_ENV_KEYS = ("versions", "machine", "created", "interp_commit")
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
    prov = dict(provenance or {})
    rows: list[tuple[str, str]] = []
    used: set[str] = set()
    for label, keys in _KNOWN:
        for key in keys:
            if key in prov:
                rows.append((label, format_cell(prov[key])))
                used.add(key)
                break
    env = prov.get("environment")
    if isinstance(env, dict):
        rows += _environment_rows(env)
        used.add("environment")
    top_env = {k: prov[k] for k in _ENV_KEYS if k in prov}
    if top_env:
        rows += _environment_rows(top_env)
        used.update(top_env)
    cache_doc = None
    for key in _CACHE_KEYS:
        if prov.get(key):
            rows.append(("cache", format_cell(prov[key])))
            used.add(key)
            if isinstance(prov[key], (str, Path)):
                cache_doc = read_manifest(prov[key], base)
            break
    for key, value in prov.items():
        if key not in used:
            rows.append((key.replace("_", " "), format_cell(value)))
    if cache_doc is not None:
        rows += manifest_rows(cache_doc)
    return rows
