"""Command-line options generated from an analysis' Config dataclass, so every field is settable from the CLI."""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from typing import Any

from interp.errors import ConfigError


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(the element type, whether it is a list) for int, float, str, bool, Optional[...], list[...]."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0]) if len(args) == 1 else (str, False)
    if origin in (list, tuple, typing.Sequence):
        args = typing.get_args(tp)
        return (args[0] if args else str), True
    return tp, False


def add_config_options(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """One `--field-name` option per dataclass field (lists take several values; bools get --no-field)."""
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        tp, is_list = _base_type(hints.get(f.name, str))
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        help_text = f"(default: {default!r})"
        if tp is bool and not is_list:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif is_list:
            parser.add_argument(flag, dest=f.name, nargs="+", type=_converter(tp), default=None, help=help_text)
        elif tp in (int, float, str):
            parser.add_argument(flag, dest=f.name, type=_converter(tp), default=None, help=help_text)
        else:  # dicts and other structures: JSON on the command line
            parser.add_argument(flag, dest=f.name, type=json.loads, default=None, help=help_text + " as JSON")


def _converter(tp):
    if tp in (int, float, str):
        return tp
    return str


def config_from_args(config_cls: type, args: argparse.Namespace, overrides: list[str] | None = None):
    """Build the Config from parsed options (unset ones keep their defaults) and `key=value` overrides."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)
              if getattr(args, f.name, None) is not None}
    names = {f.name for f in dataclasses.fields(config_cls)}
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in names:
            raise ConfigError(f"--set {item!r} does not name a {config_cls.__name__} field",
                              hint=f"fields: {', '.join(sorted(names))}")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid {config_cls.__name__}: {e}", hint="see --help for the options") from e
