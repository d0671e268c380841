"""Runs that talk: stage lines and progress bars for long work, silent in tests and with `--quiet`.

`stage("massive", "sweeping 12 checkpoints")` prints one line to stderr; `bar(iterable, "checkpoints")` is a tqdm
bar. Both are silent inside `quiet()` or when the environment sets INTERP_QUIET=1 (the test suite does).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_QUIET: contextvars.ContextVar[bool | None] = contextvars.ContextVar("interp_quiet", default=None)


def is_quiet() -> bool:
    """Whether progress output is off (inside `quiet()`, or INTERP_QUIET set to anything but 0/empty)."""
    flag = _QUIET.get()
    if flag is not None:
        return flag
    return os.environ.get("INTERP_QUIET", "") not in ("", "0")


@contextlib.contextmanager
def quiet(on: bool = True) -> Iterator[None]:
    """Silence (or, with on=False, allow) stage lines and bars inside the block."""
    token = _QUIET.set(on)
    try:
        yield
    finally:
        _QUIET.reset(token)


def stage(analysis: str, text: str) -> None:
    """One line to stderr saying what a run starts now: `[massive] sweeping 12 checkpoints`."""
    if not is_quiet():
        print(f"[{analysis}] {text}", file=sys.stderr, flush=True)


def bar(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterable[T]:
    """A tqdm progress bar over `items` (the items unchanged when quiet)."""
    if is_quiet():
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, total=total, unit=unit, leave=False, file=sys.stderr, dynamic_ncols=True)
