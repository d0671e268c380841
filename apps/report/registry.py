"""Which Result subclass reads a saved result folder: `result.json`'s "analysis" field -> analysis package.

Packages are imported lazily, so a report over massive-activation results does not import (or need) the other
analyses, and a missing or broken package turns into an error box on that page instead of a failed report.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType

from interp.errors import InterpError
from interp.results import Result

ANALYSES: dict[str, str] = {
    "dark_matter": "analyses.dark_matter",
    "lib": "analyses.lib",
    "obsprop": "analyses.obsprop",
    "massive": "analyses.massive",
    "hashcodes": "analyses.hashcodes",
}

Entry = str | type[Result]


class UnknownAnalysisError(InterpError):
    """A result.json names an analysis the report builder has no Result class for."""


def normalize(analysis: str) -> str:
    """Canonical analysis name: "dark-matter" and "dark_matter" are the same analysis."""
    return str(analysis).strip().replace("-", "_")


def _result_class_in(module: ModuleType, analysis: str) -> type[Result] | None:
    """The Result subclass that `module` exports whose `analysis` ClassVar equals `analysis` (normalized)."""
    for name in getattr(module, "__all__", None) or dir(module):
        obj = getattr(module, name, None)
        if (isinstance(obj, type) and issubclass(obj, Result) and obj is not Result
                and normalize(obj.analysis) == normalize(analysis)):
            return obj
    return None


def result_class(analysis: str, registry: Mapping[str, Entry] | None = None) -> type[Result]:
    """The Result subclass for an analysis name (`registry` entries, module paths or classes, override the defaults)."""
    table: dict[str, Entry] = {normalize(k): v for k, v in {**ANALYSES, **(registry or {})}.items()}
    entry = table.get(normalize(analysis))
    if entry is None:
        raise UnknownAnalysisError(f"no report support for analysis {analysis!r}",
                                   hint=f"known analyses: {', '.join(sorted(table))}")
    if isinstance(entry, type):
        return entry
    try:
        module = importlib.import_module(entry)
    except Exception as e:  # a missing or broken package must not take the whole report down
        raise UnknownAnalysisError(f"cannot import {entry} for analysis {analysis!r} ({type(e).__name__}: {e})",
                                   hint="is the analysis package installed and importable?") from e
    cls = _result_class_in(module, analysis)
    if cls is None:
        raise UnknownAnalysisError(f"{entry} exports no Result subclass with analysis = {analysis!r}",
                                   hint=f"export the Result subclass from {entry}/__init__.py")
    return cls
