"""Command-line options generated from an analysis' Config dataclass, so every field is settable from the CLI."""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from typing import Any

from interp.analysis import literal_choices
from interp.config_checks import type_name
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
    """One `--field-name` option per dataclass field (lists take several values; bools get --no-field).

    The help text is the field's docstring (`AnalysisConfig.field_help`), then its default; `Literal[...]` fields
    get their choices.
    """
    hints = typing.get_type_hints(config_cls)
    docs = config_cls.field_help() if hasattr(config_cls, "field_help") else {}
    group = parser.add_argument_group(f"{config_cls.__module__.rsplit('.', 1)[0]} options")
    for f in dataclasses.fields(config_cls):
        choices = literal_choices(hints.get(f.name))
        tp, is_list = _base_type(hints.get(f.name, str))
        if choices is not None:
            tp = type(choices[0])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        doc = docs.get(f.name, "").replace("%", "%%")  # argparse formats help with %
        help_text = f"{doc} (default: {default!r})".strip()
        if tp is bool and not is_list:
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif is_list:
            group.add_argument(flag, dest=f.name, nargs="+", type=_converter(tp), default=None, help=help_text,
                               choices=choices)
        elif tp in (int, float, str):
            group.add_argument(flag, dest=f.name, type=_converter(tp), default=None, help=help_text, choices=choices)
        else:  # dicts and other structures: JSON on the command line
            group.add_argument(flag, dest=f.name, type=json.loads, default=None, help=help_text + " as JSON")


def _converter(tp):
    if tp in (int, float, str):
        return tp
    return str


def _type_name(tp: Any) -> str:
    """The type as an error message names it, with how lists are written on the command line."""
    return type_name(tp, " (comma-separated or JSON)")


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
_EXAMPLES = {int: "10", float: "0.5", bool: "true", str: "text"}


def _example(tp: Any) -> str:
    """A value of the annotated type as it is written after `--set key=` (for the error's hint)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return next((_example(a) for a in typing.get_args(tp) if a is not type(None)), "none")
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        args = typing.get_args(tp)
        return {int: "1,2", float: "0.5,1.0", bool: "true,false"}.get(args[0] if args else str, "a,b")
    return _EXAMPLES.get(tp, "'{\"key\": 1}'")


def _scalar(value: Any, tp: Any) -> Any:
    """One value (a string from the command line, or an item of a JSON list) as int, float, bool or str.

    Raises ValueError when it does not convert: the caller names the field and the expected type.
    """
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError(value)
    if tp is int:
        if isinstance(value, bool) or isinstance(value, float):
            raise ValueError(value)
        return int(value)  # int("1.5") and int("abc") raise ValueError
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)
    if tp is str:
        if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
            try:
                return str(json.loads(value))  # a JSON string literal: --set model='"name"'
            except json.JSONDecodeError:
                return value
        return value if isinstance(value, str) else json.dumps(value)
    # dicts and other structures: JSON
    return json.loads(value) if isinstance(value, str) else value


def _coerce(raw: str, tp: Any) -> Any:
    """The `--set` value `raw` as the field's annotated type (Optional, list[...] from commas or JSON, scalars).

    Raises ValueError (or TypeError) when it does not convert.
    """
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        value = _scalar(raw, type(choices[0]))
        if value not in choices:
            raise ValueError(raw)
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and raw.strip().lower() in ("none", "null"):
            return None
        for a in (a for a in args if a is not type(None)):
            try:
                return _coerce(raw, a)
            except (ValueError, TypeError):
                continue
        raise ValueError(raw)
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        args = typing.get_args(tp)
        elem = args[0] if args else str
        text = raw.strip()
        if text.startswith("["):
            items = json.loads(text)
            if not isinstance(items, list):
                raise ValueError(raw)
        else:
            items = [t.strip() for t in text.split(",")] if text else []
        return [_scalar(v, elem) for v in items]
    return _scalar(raw, tp)


def config_from_args(config_cls: type, args: argparse.Namespace, overrides: list[str] | None = None):
    """Build the Config from parsed options (unset ones keep their defaults) and `key=value` overrides.

    Each override is converted to its field's annotated type here, so a bad value is a one-line ConfigError
    naming the field rather than a TypeError deep inside the analysis.
    """
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)
              if getattr(args, f.name, None) is not None}
    names = {f.name for f in dataclasses.fields(config_cls)}
    hints = typing.get_type_hints(config_cls)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ConfigError(f"--set {item!r} is not of the form KEY=VALUE",
                              hint=f"write --set {key or 'KEY'}=VALUE (e.g. --set n_inputs=10)")
        if key not in names:
            raise ConfigError(f"--set {item!r} does not name a {config_cls.__name__} field",
                              hint=f"fields: {', '.join(sorted(names))}")
        tp = hints.get(key, str)
        try:
            values[key] = _coerce(raw, tp)
        except (ValueError, TypeError) as e:  # json.JSONDecodeError is a ValueError
            raise ConfigError(f"--set {key}={raw!r}: expected {_type_name(tp)}",
                              hint=f"e.g. --set {key}={_example(tp)}") from e
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid {config_cls.__name__}: {e}", hint="see --help for the options") from e
