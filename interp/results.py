"""The analysis result contract: numbers in `result.json`, arrays in `arrays.safetensors`, figures on demand.

Every analysis returns a subclass of `Result`. `save(dir)` writes it, `load(dir)` restores it without
recomputation, `figures()` rebuilds the plotly figures from the stored numbers and arrays (used by Jupyter and
by the report builder), and `_repr_html_` shows the headline table in a notebook.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from interp.fileio import atomic_write_bytes

RESULT_SCHEMA_VERSION = 1


def to_jsonable(value: Any) -> Any:
    """Convert numpy/torch scalars, arrays, tuples, paths and dataclass-like objects to plain JSON values."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        value = value.item()
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if hasattr(value, "__dataclass_fields__"):
        return {k: to_jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    return value


def fmt(value: Any, spec: str = ".3g") -> str:
    """A number for a label or hover text: `format(value, spec)`, or "n/a" for None/NaN (how result.json stores a
    NaN) and "±inf" for infinities (stored as strings), so a saved and reloaded result labels its figures too."""
    if isinstance(value, str) and value in ("inf", "-inf"):
        return value
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "n/a" if value is None else str(value)
    if math.isnan(x):
        return "n/a"
    return format(x, spec) if math.isfinite(x) else ("inf" if x > 0 else "-inf")


# ------------------------------------------------------------------------------------------------- findings
Verdict = Literal["held", "did not hold", "not applicable"]
_OPS: dict[str, Callable[[float, Any], bool]] = {
    ">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b,
    "between": lambda a, b: b[0] <= a <= b[1],  # threshold = [low, high], both included
}


@dataclass(frozen=True)
class Finding:
    """One of the paper's checkable claims, the number measured here, the paper's number, and the verdict.

    Build it with `Finding.compare`, which derives the verdict from the number, so the two cannot disagree;
    `key` names where the number sits in the result (`summary` or a dotted path into `details`), so tests and
    readers can check that the finding cites the result.
    """

    claim: str
    measured: float | str | None
    paper: str
    verdict: Verdict
    detail: str = ""
    key: str = ""
    op: str = ""
    threshold: float | list[float] | None = None

    @classmethod
    def compare(cls, claim: str, measured: Any, op: str, threshold: float | Sequence[float], *, paper: str,
                key: str = "",
                detail: str = "", why_not_applicable: str = "") -> Finding:
        """The finding `measured op threshold` (e.g. `0.93 >= 0.9`, or `between [0.3, 0.7]`); a missing or NaN
        number is not applicable."""
        if op not in _OPS:
            raise ValueError(f"op must be one of {', '.join(_OPS)}, got {op!r}")
        value = _number(measured)
        if value is None:
            verdict: Verdict = "not applicable"
            detail = why_not_applicable or detail or "The number could not be measured here"
        else:
            verdict = "held" if _OPS[op](value, _bound(threshold)) else "did not hold"
        return cls(claim=claim, measured=value, paper=paper, verdict=verdict, detail=detail, key=key, op=op,
                   threshold=_bound(threshold))

    @classmethod
    def not_applicable(cls, claim: str, why: str, *, paper: str, key: str = "") -> Finding:
        """A claim this run cannot check (a study was skipped, the model lacks what it needs), with the reason."""
        return cls(claim=claim, measured=None, paper=paper, verdict="not applicable", detail=why, key=key)

    def consistent(self) -> bool:
        """Whether the verdict is the one the number and the rule give (always true for `compare`'d findings)."""
        value = _number(self.measured)
        if not self.op:
            return self.verdict == "not applicable" or value is not None
        if value is None:
            return self.verdict == "not applicable"
        return self.verdict == ("held" if _OPS[self.op](value, _bound(self.threshold)) else "did not hold")

    def sentence(self) -> str:
        """The finding in words: 'Held: <claim>. Here 0.93 (rule >= 0.9; paper: ...).'"""
        head = {"held": "Held", "did not hold": "Did not hold", "not applicable": "Not applicable"}[self.verdict]
        bound = (f"in [{_fmt(self.threshold[0])}, {_fmt(self.threshold[1])}]" if self.op == "between"
                 else f"{self.op} {_fmt(self.threshold)}")
        parts = [f"{head}: {self.claim}."]
        if self.measured is None:
            parts.append(f"Paper: {self.paper}.")
        else:
            rule = f" (needs {bound})" if self.op else ""
            parts.append(f"Here {_fmt(self.measured)}{rule}; paper: {self.paper}.")
        if self.detail:
            parts.append(self.detail.rstrip(".") + ".")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Finding:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


def _bound(threshold: Any) -> float | list[float]:
    if isinstance(threshold, (list, tuple)):
        return [float(threshold[0]), float(threshold[1])]
    return float(threshold)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or isinstance(value, str):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if x != x else x


def _fmt(x: Any) -> str:
    return fmt(x, ".3g")



@dataclass
class Result:
    """Base of every analysis result.

    findings:   the paper's checkable claims, the numbers measured here and the verdicts (shown first everywhere)
    summary:    headline numbers (name -> scalar or short string), shown as the table in reports and Jupyter
    details:    every other number, table (list of row dicts) or nested dict, all JSON-able
    arrays:     named numpy arrays behind the figures (saved as safetensors)
    config:     the Config the analysis ran with, as a dict
    provenance: model, checkpoint, hooks, token source and count, package versions (see interp.provenance)
    """

    analysis: ClassVar[str] = "result"
    title: ClassVar[str] = "Analysis result"

    summary: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    # figure name -> one line that says what to look at (reports print it under the figure)
    captions: ClassVar[dict[str, str]] = {}

    # ----------------------------------------------------------------------------------------- persistence
    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write `result.json` and `arrays.safetensors` into `out_dir` (created if needed); return the folder."""
        from safetensors.numpy import save as st_save

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        arrays = {k: np.ascontiguousarray(np.asarray(v)) for k, v in self.arrays.items()}
        blob = st_save(arrays)
        atomic_write_bytes(out / "arrays.safetensors", blob)
        doc = {
            "schema_version": RESULT_SCHEMA_VERSION,
            "analysis": self.analysis,
            "title": self.title,
            "findings": [f.to_dict() for f in self.findings],
            "summary": to_jsonable(self.summary),
            "details": to_jsonable(self.details),
            "config": to_jsonable(self.config),
            "provenance": to_jsonable(self.provenance),
            "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
            # ties result.json to this arrays file: a save killed between the two renames is found on load
            "arrays_sha256": hashlib.sha256(blob).hexdigest(),
        }
        atomic_write_bytes(out / "result.json", json.dumps(doc, indent=2, sort_keys=False).encode())
        return out

    @classmethod
    def load(cls, out_dir: str | os.PathLike) -> Result:
        """Restore a saved result (no recomputation). Calling on the base class returns the base type."""
        from interp.errors import InterpError

        out = Path(out_dir)
        path = out / "result.json"
        if not path.is_file():
            raise InterpError(f"no result.json in {out}", hint="point at the folder an analysis wrote with --out")
        try:
            doc = json.loads(path.read_bytes())
        except ValueError as e:  # JSON or UTF-8 errors
            raise _damaged(path, f"{type(e).__name__}: {e}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("arrays", {}), dict):
            raise _damaged(path, "not a result document")
        if cls.analysis != "result" and doc.get("analysis") != cls.analysis:
            raise InterpError(
                f"{path} holds a '{doc.get('analysis')}' result, not '{cls.analysis}'",
                hint=f"load it with the {doc.get('analysis')} analysis' Result class",
            )
        arrays = _load_arrays(out / "arrays.safetensors", doc, path)
        return cls(
            summary=doc.get("summary", {}),
            details=doc.get("details", {}),
            arrays=arrays,
            config=doc.get("config", {}),
            provenance=doc.get("provenance", {}),
            findings=[Finding.from_dict(f) for f in doc.get("findings", []) if isinstance(f, dict)],
        )

    # ----------------------------------------------------------------------------------------- display
    def figures(self) -> dict[str, Any]:
        """Named plotly figures built from the stored numbers and arrays. Subclasses override."""
        return {}

    def summary_rows(self) -> list[tuple[str, str]]:
        """The headline table as (name, formatted value) rows."""
        return [(k, _format_value(v)) for k, v in self.summary.items()]

    def headline(self) -> str:
        """One line for an index: how many claims held, and the first finding that did not (or the first)."""
        if not self.findings:
            return ", ".join(f"{k} = {v}" for k, v in self.summary_rows()[:3])
        held = sum(f.verdict == "held" for f in self.findings)
        checked = sum(f.verdict != "not applicable" for f in self.findings)
        first = next((f for f in self.findings if f.verdict == "did not hold"), self.findings[0])
        return f"{held} of {checked} checkable claims held. {first.sentence()}"

    def findings_html(self) -> str:
        """The findings as an HTML list, verdict first (report pages and Jupyter)."""
        esc = html.escape
        colour = {"held": "#1a7f37", "did not hold": "#b3261e", "not applicable": "#6b6b6b"}
        items = "".join(
            f"<li><b style='color:{colour[f.verdict]}'>{esc(f.verdict)}</b>: {esc(f.sentence().split(': ', 1)[1])}"
            "</li>" for f in self.findings)
        return f"<ul class='findings'>{items}</ul>" if items else ""

    def _repr_html_(self) -> str:
        """Notebook view: title, where it came from (model, checkpoint, hooks, tokens), findings, headline table."""
        esc = html.escape
        rows = "".join(
            f"<tr><td style='text-align:left'>{esc(k)}</td><td style='text-align:right'>{esc(v)}</td></tr>"
            for k, v in self.summary_rows()
        )
        prov = self.provenance or {}
        where = " · ".join(
            f"{label} {_format_value(prov[key])}" for key, label in
            (("model", "model"), ("checkpoint", "checkpoint"), ("step", "step"), ("hooks", "hooks"),
             ("n_tokens", "tokens")) if prov.get(key) not in (None, "", [])
        )
        more = ", ".join(f"{len(getattr(self, k))} {k}" for k in ("details", "arrays") if getattr(self, k))
        return (
            f"<div><b>{esc(self.title)}</b> <code>{esc(self.analysis)}</code>"
            + (f"<br><small>{esc(where)}</small>" if where else "")
            + self.findings_html()
            + f"<table><thead><tr><th>quantity</th><th>value</th></tr></thead><tbody>{rows}</tbody></table>"
            f"<small>.figures() returns the plotly figures{esc('; ' + more) if more else ''}; .save(dir) writes "
            "result.json + arrays.safetensors</small></div>"
        )

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v}" for k, v in self.summary_rows()[:8])
        found = "".join(f"\n  {f.sentence()}" for f in self.findings)
        return f"{type(self).__name__}({body}){found}"


def _damaged(path: Path, why: str) -> Exception:
    from interp.errors import InterpError

    return InterpError(f"{path} is damaged: {why}", hint="re-run the analysis that wrote it")


def _load_arrays(path: Path, doc: dict, result_path: Path) -> dict[str, np.ndarray]:
    """The arrays that result.json lists, checked against its names, shapes, dtypes and (when recorded) the file's
    sha256: a missing file or one from another run (a save cut short between its two renames) is refused."""
    from safetensors.numpy import load as st_load

    listed = doc.get("arrays", {})
    if not path.is_file():
        if listed:
            raise _damaged(result_path, f"its arrays file {path.name} is missing ({len(listed)} arrays listed)")
        return {}
    blob = path.read_bytes()
    want = doc.get("arrays_sha256")
    if want is not None and hashlib.sha256(blob).hexdigest() != want:
        raise _damaged(result_path, f"{path.name} is not the file saved with it (sha256 differs)")
    try:
        arrays = dict(st_load(blob))
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise _damaged(result_path, f"{path.name} cannot be read ({type(e).__name__}: {e})") from None
    for name, meta in listed.items():
        a = arrays.get(name)
        if a is None or list(a.shape) != list(meta.get("shape", [])) or str(a.dtype) != meta.get("dtype"):
            got = "missing" if a is None else f"{a.dtype} {list(a.shape)}"
            raise _damaged(result_path, f"array '{name}' is {got}, result.json says {meta.get('dtype')} "
                                        f"{meta.get('shape')}")
    return arrays


def _format_value(v: Any) -> str:
    if v is None:  # NaN is saved as null by to_jsonable
        return "n/a"
    if isinstance(v, (list, tuple)):
        return ", ".join(_format_value(x) for x in v)
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(v)
