"""Provenance: what produced a cache or a result (package versions, machine, time, git commit)."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as _md
import platform
import subprocess
from pathlib import Path

_PACKAGES = ("interp", "torch", "transformer-lens", "sae-lens", "transformers", "numpy", "safetensors")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that can change a number interp computes."""
    out: dict[str, str] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = _md.version(name)
        except _md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the interp checkout, if it is one (None for an installed wheel)."""
    root = Path(path or Path(__file__).resolve().parents[1])
    try:
        res = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def environment() -> dict[str, object]:
    """Versions, machine and time in one JSON-able dict, for manifests and result.json."""
    return {
        "versions": package_versions(),
        "machine": f"{platform.system()} {platform.machine()}",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "interp_commit": git_commit(),
    }
