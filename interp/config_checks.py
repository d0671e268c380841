"""Checks every analysis Config runs before it starts: field types against the annotations, and numeric ranges.

A Config built in Python is not parsed like the command line's, so `Config(n_inputs="1")` or `steps=3000` (for a
list) used to fail deep inside a run, or a string was split into characters. `check_types` refuses such values up
front with the field's name and expected type; `check_ranges` does the same for sizes and fractions.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from interp.errors import ConfigError


def type_name(tp: Any, list_note: str = "") -> str:
    """How an annotated type reads in an error message (`int`, `list of float`, `int or None`)."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("None" if a is type(None) else type_name(a, list_note) for a in typing.get_args(tp))
    if origin in (list, tuple) or tp in (list, tuple):
        args = typing.get_args(tp)
        return f"list of {type_name(args[0]) if args else 'values'}{list_note}"
    return getattr(tp, "__name__", str(tp))


def _matches(value: Any, tp: Any) -> bool | None:
    """Whether `value` has annotated type `tp`; None where the annotation is not one this check knows."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        verdicts = [_matches(value, a) for a in typing.get_args(tp)]
        return True if any(verdicts) else (None if None in verdicts else False)
    if tp is type(None):
        return value is None
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = typing.get_args(tp)
        inner = [_matches(v, args[0]) for v in value] if args and args[0] is not Ellipsis else []
        return None if None in inner else all(inner)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    return None


def check_types(cfg: Any) -> None:
    """Raise ConfigError naming the first field whose value does not have its annotated type."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        tp = hints.get(f.name)
        value = getattr(cfg, f.name)
        if tp is not None and _matches(value, tp) is False:
            raise ConfigError(f"{type(cfg).__module__.rsplit('.', 1)[0]} Config.{f.name} must be {type_name(tp)}, "
                              f"got {value!r} ({type(value).__name__})",
                              hint=f"pass {f.name} as {type_name(tp)} "
                                   f"(on the command line: --{f.name.replace('_', '-')})")


def check_ranges(cfg: Any, *, at_least: dict[str, float] | None = None,
                 fractions: dict[str, tuple[float, float]] | None = None) -> None:
    """Refuse fields below their least value (sizes, counts) or outside a closed range (fractions); list fields are
    checked element by element. Refused values used to run as Python slices (-5: all but five) or as no work."""
    for name, least in (at_least or {}).items():
        value = getattr(cfg, name)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v is not None and v < least:
                raise ConfigError(f"{name} must be >= {least:g}, got {value!r}",
                                  hint=f"set {name} to {least:g} or more")
    for name, (lo, hi) in (fractions or {}).items():
        value = getattr(cfg, name)
        if not lo <= value <= hi:
            raise ConfigError(f"{name} must be in [{lo:g}, {hi:g}], got {value!r}",
                              hint=f"e.g. {name}={(lo + hi) / 2:g}")


def check_context(model: Any, ctx: int, field: str = "ctx") -> None:
    """Refuse blocks longer than the model's context (a shape error deep in the forward pass otherwise)."""
    n_ctx = getattr(getattr(model, "cfg", None), "n_ctx", None) or getattr(getattr(model, "config", None),
                                                                         "max_position_embeddings", None)
    if n_ctx is not None and int(ctx) > int(n_ctx):
        sep = " " if field.startswith("--") else "="
        raise ConfigError(f"{field}{sep}{ctx} is longer than the model's context of {n_ctx} tokens",
                          hint=f"pass {field} {n_ctx} or less")


def check_layer(model: Any, layer: int, field: str = "layer") -> None:
    """Refuse a layer index the model does not have, naming how many it has."""
    n_layers = getattr(getattr(model, "cfg", None), "n_layers", None)
    if n_layers is not None and not 0 <= int(layer) < int(n_layers):
        raise ConfigError(f"{field}={layer}, but the model has {n_layers} layers",
                          hint=f"pass {field} between 0 and {int(n_layers) - 1} (-1: the middle one)")


def check_device(device: str) -> None:
    """A device torch knows and this machine has, else a ConfigError (not torch's assertion deep in a run)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"unknown device {device!r}: {e}", hint="use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} asked for, but this torch has no usable CUDA GPU",
                              hint="use --device cpu, or install a CUDA build of torch on a GPU machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: this machine has {torch.cuda.device_count()} GPU(s)",
                              hint=f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
