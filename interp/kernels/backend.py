"""Backend selection for the sparse kernels: Triton when usable, else torch (embedding_bag, index ops) or dense."""

from __future__ import annotations

import os
import warnings
from functools import lru_cache
from types import ModuleType

import torch

from interp.errors import ConfigError

TRITON_FALLBACK_MSG = "interp.kernels: Triton backend unavailable ({why}); falling back to '{fallback}'."


@lru_cache(maxsize=1)
def _import_triton() -> tuple[ModuleType | None, str]:
    """Import triton once; return (module or None, reason when missing)."""
    try:
        import triton  # noqa: F401

        return triton, ""
    except Exception as e:  # ImportError or a broken install
        return None, f"triton is not importable: {type(e).__name__}: {e}"


def interpret_mode() -> bool:
    """True when Triton kernels run in the CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0", "false", "False")


@lru_cache(maxsize=1)
def _interpreter_broken() -> str:
    """Why this triton's CPU interpreter cannot run our kernels ('' if it can).

    triton < 3.7 turns loop bounds into Python ints with `int(array_of_shape_1)`, which numpy ≥ 2.4 refuses;
    triton 3.7 squeezes first. Every kernel with a runtime loop then fails inside the interpreter.
    """
    import numpy as np

    triton, _ = _import_triton()
    version = tuple(int(p) for p in triton.__version__.split(".")[:2] if p.isdigit())
    if version >= (3, 7):
        return ""
    try:
        int(np.zeros(1))
    except TypeError:
        return (f"triton {triton.__version__}'s interpreter cannot run loops with numpy {np.__version__} "
                "(fixed in triton 3.7); install triton>=3.7 or numpy<2.4")
    return ""


def triton_status(device: torch.device | str) -> tuple[bool, str]:
    """Whether Triton kernels can run on tensors of `device`, and why not."""
    triton, why = _import_triton()
    if triton is None:
        return False, why
    dev = torch.device(device)
    if dev.type == "cuda":
        return (True, "") if not interpret_mode() else (False, "TRITON_INTERPRET=1 runs kernels on the CPU only")
    if dev.type == "cpu":
        if interpret_mode():
            broken = _interpreter_broken()
            return (not broken), broken
        return False, "tensors are on the CPU and TRITON_INTERPRET=1 is not set"
    return False, f"device type {dev.type!r} is not supported by the Triton kernels"


def triton_kernels() -> ModuleType:
    """The kernel module (imported lazily so TRITON_INTERPRET set at test import time takes effect)."""
    import interp.kernels.triton_kernels as tk  # the module itself, not through the package's __init__

    return tk


_WARNED: set[str] = set()


def choose(op: str, backend: str, device: torch.device | str, allowed: tuple[str, ...], cpu_default: str) -> str:
    """Resolve `backend` ('auto' or one of `allowed`) for `op` on `device`; fall back from Triton with a message."""
    if backend not in ("auto", *allowed):
        raise ConfigError(f"unknown backend {backend!r} for {op}", hint=f"use one of: auto, {', '.join(allowed)}")
    ok, why = triton_status(device)
    if backend == "auto":
        if "triton" in allowed and ok and torch.device(device).type == "cuda":
            return "triton"
        return cpu_default
    if backend == "triton" and not ok:
        key = f"{op}:{why}"
        if key not in _WARNED:
            _WARNED.add(key)
            warnings.warn(TRITON_FALLBACK_MSG.format(why=why, fallback=cpu_default), RuntimeWarning, stacklevel=3)
        return cpu_default
    return backend
