"""Where the embedded data lives: `$INTERP_DATA` if set, else `data/` beside the installed package.

Its own module so that token sources and model loading can both ask without importing each other.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The embedded data folder: $INTERP_DATA if set, else `data/` beside the installed package."""
    env = os.environ.get("INTERP_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "data"
