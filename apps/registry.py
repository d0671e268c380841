"""The five analyses by CLI name, imported lazily (importing all of them up front would slow every command)."""

from __future__ import annotations

import importlib
from types import ModuleType

from interp.errors import ConfigError

ANALYSES = {
    "dark-matter": "analyses.dark_matter",
    "lib": "analyses.lib",
    "obsprop": "analyses.obsprop",
    "massive": "analyses.massive",
    "hashcodes": "analyses.hashcodes",
}


def analysis_module(name: str) -> ModuleType:
    """The analysis package for a CLI name (dark-matter, lib, obsprop, massive, hashcodes)."""
    key = name.replace("_", "-")
    if key not in ANALYSES:
        raise ConfigError(f"unknown analysis '{name}'", hint=f"choose one of {', '.join(ANALYSES)}")
    try:
        return importlib.import_module(ANALYSES[key])
    except ImportError as e:
        raise ConfigError(f"analysis '{name}' is not available ({e})", hint="reinstall interp: make install") from e
