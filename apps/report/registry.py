"""Which Result subclass reads a saved result folder: `result.json`'s "analysis" field -> `analyses.REGISTRY`.

Analyses are imported lazily, so a report over massive-activation results does not import (or need) the other
analyses, and a missing or broken package turns into an error box on that page instead of a failed report.
Callers (tests, plug-in analyses) may pass extra entries: analysis name -> Result subclass or module path.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType

from analyses import REGISTRY
from interp.analysis import UnknownAnalysisError, normalize
from interp.results import Result

Entry = str | type[Result]

__all__ = ["Entry", "UnknownAnalysisError", "normalize", "result_class", "analysis_order"]


def analysis_order() -> dict[str, int]:
    """Registry position of each analysis (normalised name): the order of the report's index."""
    return {normalize(n): i for i, n in enumerate(REGISTRY.names())}


def _result_class_in(module: ModuleType, analysis: str) -> type[Result] | None:
    """The Result subclass that `module` exports whose `analysis` ClassVar equals `analysis` (normalized)."""
    for name in getattr(module, "__all__", None) or dir(module):
        obj = getattr(module, name, None)
        if (isinstance(obj, type) and issubclass(obj, Result) and obj is not Result
                and normalize(obj.analysis) == normalize(analysis)):
            return obj
    return None


def result_class(analysis: str, registry: Mapping[str, Entry] | None = None) -> type[Result]:
    """The Result subclass for an analysis name: `registry` entries first, then `analyses.REGISTRY`."""
    extra: dict[str, Entry] = {normalize(k): v for k, v in (registry or {}).items()}
    entry = extra.get(normalize(analysis))
    if entry is None:
        if analysis in REGISTRY:
            try:
                return REGISTRY.get(analysis).result
            except UnknownAnalysisError as e:
                raise UnknownAnalysisError(f"cannot import analysis {analysis!r}: {e.message}", hint=e.hint) from e
        known = sorted({*REGISTRY.names(), *extra})
        raise UnknownAnalysisError(f"no report support for analysis {analysis!r}",
                                   hint=f"known analyses: {', '.join(known)}")
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
