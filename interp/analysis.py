"""The analysis contract: one Config base, findings in words, typed provenance, one record per analysis.

An analysis is one package under `analyses/` that exports `ANALYSIS = Analysis(...)`: its name, its `Config`
(a subclass of `AnalysisConfig`), its `run(config) -> Result`, its `Result` class and the reduced sizes of a quick
run. `analyses.REGISTRY` lists the packages, one line each; the command line, the demo, the report builder and the
tests read that one registry, so a sixth analysis is one folder and one line.

Why this lives in `interp` and the list of analyses in `analyses`: the contract knows no paper (it is
infrastructure, as `interp.results` is), while which analyses exist is a fact of the `analyses` layer; `apps`
reads both, and nothing in `interp` imports `analyses`.

Field documentation is the field's docstring (a string literal right after the field), or failing that its
trailing comment: `Config.field_help()` returns it, and `interp analyze NAME --help` prints it. Enumerated fields
are annotated `Literal[...]`; their choices are checked by `validate()` and listed by `--help`.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import io
import textwrap
import tokenize
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from interp.config_checks import check_device, check_ranges, check_types
from interp.errors import ConfigError, InterpError
from interp.results import Finding, Result, to_jsonable

__all__ = ["AnalysisConfig", "Analysis", "Finding", "Provenance", "Registry", "Result", "UnknownAnalysisError",
           "literal_choices", "normalize"]

C = TypeVar("C", bound="AnalysisConfig")


@dataclass
class AnalysisConfig:
    """The fields every analysis shares: which model and checkpoint, which data, which seed and device."""

    model: str = ""
    """Model: an embedded suite name, a local Hugging Face folder or a transformer-lens name ("" = the default)."""
    step: int = -1
    """Training step of a checkpointed model; -1 = its final checkpoint."""
    data: str = "embedded"
    """Token source: 'embedded', a .txt/.jsonl/.parquet file, a folder of them, or hf:NAME[:SPLIT]."""
    seed: int = 0
    """Seed of every random choice (sampling, initialisation, splits)."""
    device: str = "cpu"
    """Torch device: cpu, cuda or cuda:N."""

    def validate(self: C) -> C:
        """Check every field (types and choices from the annotations, then the analysis's own `check`); return self.

        Raises ConfigError naming the field and the fix, before any slow work.
        """
        check_types(self)
        check_ranges(self, at_least={"step": -1})
        check_device(self.device)
        self.check()
        return self

    @property
    def load_step(self) -> int | None:
        """`step` as `interp.models.load` takes it: None for the final checkpoint (step -1)."""
        return None if self.step < 0 else self.step

    def check(self) -> None:
        """The analysis's own checks (ranges, combinations); subclasses override. Runs after the type checks."""

    # ------------------------------------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON values (what result.json stores as `config`)."""
        return {f.name: to_jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[C], values: Mapping[str, Any]) -> C:
        """The Config for a dict of field values (as `to_dict` wrote it); unknown keys are refused by name."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"{cls.__module__.rsplit('.', 1)[0]} Config has no field(s) {', '.join(unknown)}",
                              hint=f"fields: {', '.join(sorted(names))}")
        return cls(**dict(values))

    @classmethod
    def field_help(cls) -> dict[str, str]:
        """Each field's documentation (its docstring, else its trailing comment), base fields included."""
        docs: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            if dataclasses.is_dataclass(klass):
                docs.update(_field_docs(klass))
        return {f.name: docs.get(f.name, "") for f in dataclasses.fields(cls)}

    @classmethod
    def choices(cls, name: str) -> tuple[Any, ...] | None:
        """The allowed values of a `Literal[...]` field (None for a free field)."""
        tp = typing.get_type_hints(cls).get(name)
        return literal_choices(tp)


def literal_choices(tp: Any) -> tuple[Any, ...] | None:
    """The values of `Literal[...]` (also inside `Optional`/`list`), or None."""
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    for arg in typing.get_args(tp):
        found = literal_choices(arg)
        if found is not None:
            return found
    return None


def _field_docs(klass: type) -> dict[str, str]:
    """Field docstrings (a string statement right after `name: type = ...`) and trailing comments of one class."""
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):  # built in a notebook or from a string: no source to read
        return {}
    tree = ast.parse(source)
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    comments = _comments_by_line(source)
    docs: dict[str, str] = {}
    for i, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        nxt = body[i + 1] if i + 1 < len(body) else None
        if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
            docs[node.target.id] = " ".join(nxt.value.value.split())
            continue
        text = []  # the trailing comment and the comment-only lines that continue it
        line = node.end_lineno or node.lineno
        while line in comments and (line == (node.end_lineno or node.lineno) or comments[line][1]):
            text.append(comments[line][0])
            line += 1
        if text:
            docs[node.target.id] = " ".join(" ".join(text).split())
    return docs


def _comments_by_line(source: str) -> dict[int, tuple[str, bool]]:
    """line -> (comment text, whether the line holds nothing but the comment)."""
    out: dict[int, tuple[str, bool]] = {}
    lines = source.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            row = tok.start[0]
            only = lines[row - 1].strip().startswith("#")
            out[row] = (tok.string.lstrip("#").strip(), only)
    return out


# ------------------------------------------------------------------------------------------------- provenance
@dataclass
class Provenance:
    """What produced a result: the model and checkpoint, the data and how much of it, the hooks, the environment.

    Every analysis records these names (and nothing else at the top level; the rest goes in `extra`), so the report
    reads one set of keys. `from_dict` also reads results saved before this contract (older key spellings).
    """

    model: str = ""
    step: int | list[int] | None = None
    data: str = ""
    n_tokens: int | None = None
    hooks: list[str] = field(default_factory=list)
    cache: str = ""
    environment: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    _LEGACY: ClassVar[dict[str, tuple[str, ...]]] = {
        "model": ("model_id", "model_name", "model_source"),
        "step": ("checkpoint", "steps", "checkpoints"),
        "data": ("token_source", "tokens_source", "source", "dataset", "corpus"),
        "n_tokens": ("n_heldout_tokens", "tokens", "token_count"),
        "hooks": ("hook", "hook_names"),
        "cache": ("cache_dir", "cache_path", "activation_cache"),
    }

    @classmethod
    def collect(cls, *, model: str = "", step: Any = None, data: str = "", n_tokens: int | None = None,
                hooks: list[str] | None = None, cache: str = "", **extra: Any) -> Provenance:
        """A provenance with this machine's environment (package versions, machine, time, interp commit)."""
        from interp.provenance import environment

        return cls(model=str(model), step=step, data=str(data), n_tokens=n_tokens, hooks=list(hooks or []),
                   cache=str(cache or ""), environment=environment(), extra=extra)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out.update(self.extra)
        return to_jsonable(out)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None) -> Provenance:
        """Read a saved provenance; older spellings (checkpoint, source, token_source ...) map onto the fields."""
        doc = dict(doc or {})
        values: dict[str, Any] = {}
        for name in ("model", "step", "data", "n_tokens", "hooks", "cache", "environment"):
            for key in (name, *cls._LEGACY.get(name, ())):
                if key in doc:
                    values[name] = doc.pop(key)
                    break
        env_keys = ("versions", "machine", "created", "interp_commit")
        if "environment" not in values and any(k in doc for k in env_keys):
            values["environment"] = {k: doc.pop(k) for k in env_keys if k in doc}
        hooks = values.get("hooks", [])
        values["hooks"] = [hooks] if isinstance(hooks, str) else list(hooks or [])
        return cls(**values, extra=doc)


# ------------------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Analysis:
    """One analysis as the tools see it.

    name:        the command-line name (`interp analyze NAME`), e.g. "dark-matter"
    title:       the paper's question in a few words (report headings, `interp analyze --help`)
    config:      the Config class (a subclass of AnalysisConfig)
    run:         `run(config) -> Result`
    result:      the Result subclass that reads a saved result back
    quick:       reduced Config values for `interp demo --quick` and the tests (seconds to a minute)
    cache_hooks: optional `(config, n_layers) -> hooks`: the demo extracts these into a cache the analysis reads
                 through its `cache` field (model -> capture -> cache -> analysis)
    """

    name: str
    title: str
    config: type[AnalysisConfig]
    run: Callable[..., Any]
    result: type
    quick: Mapping[str, Any] = field(default_factory=dict)
    cache_hooks: Callable[[Any, int], list[str]] | None = None

    @property
    def key(self) -> str:
        """The name as result.json stores it ("dark_matter")."""
        return normalize(self.name)

    def make_config(self, quick: bool = False, **values: Any) -> AnalysisConfig:
        """A Config with the quick sizes (when asked) and `values` on top."""
        return self.config.from_dict({**(dict(self.quick) if quick else {}), **values})


def normalize(name: str) -> str:
    """One spelling of an analysis name: "dark-matter", "dark_matter" and "Dark-Matter" are the same analysis."""
    return str(name).strip().lower().replace("-", "_")


class UnknownAnalysisError(InterpError):
    """A name (on the command line, in result.json) that no registered analysis has."""


class Registry:
    """Analyses by name: module paths imported on first use (so `interp extract` never imports an analysis)."""

    def __init__(self, modules: Mapping[str, str]):
        self._modules: dict[str, str] = {normalize(k): v for k, v in modules.items()}
        self._names: dict[str, str] = {normalize(k): k for k in modules}
        self._loaded: dict[str, Analysis] = {}

    def names(self) -> list[str]:
        """Command-line names, in registry order."""
        return list(self._names.values())

    def __contains__(self, name: str) -> bool:
        return normalize(name) in self._names

    def register(self, entry: Analysis | str, name: str | None = None) -> None:
        """Add an analysis: an `Analysis` record, or a module path exporting `ANALYSIS` (with its `name`)."""
        if isinstance(entry, Analysis):
            self._names[entry.key] = entry.name
            self._loaded[entry.key] = entry
            return
        if name is None:
            raise ValueError("register(module_path) needs the analysis name")
        self._names[normalize(name)] = name
        self._modules[normalize(name)] = entry
        self._loaded.pop(normalize(name), None)

    def unregister(self, name: str) -> None:
        for table in (self._names, self._modules, self._loaded):
            table.pop(normalize(name), None)

    def get(self, name: str) -> Analysis:
        """The Analysis record for a name (either spelling); an unknown name is a one-line error listing them."""
        key = normalize(name)
        if key in self._loaded:
            return self._loaded[key]
        if key not in self._modules:
            raise UnknownAnalysisError(f"unknown analysis '{name}'", hint=f"choose one of {', '.join(self.names())}")
        try:
            module = importlib.import_module(self._modules[key])
        except ImportError as e:
            raise UnknownAnalysisError(f"analysis '{name}' cannot be imported ({type(e).__name__}: {e})",
                                       hint="reinstall interp: make install") from e
        record = getattr(module, "ANALYSIS", None)
        if not isinstance(record, Analysis):
            raise UnknownAnalysisError(f"{self._modules[key]} exports no ANALYSIS record",
                                       hint="define ANALYSIS = interp.analysis.Analysis(...) in its __init__.py")
        self._loaded[key] = record
        return record

    def all(self) -> list[Analysis]:
        return [self.get(n) for n in self.names()]
