"""Build the HTML report: one page per saved result folder plus an index page, plotly.js written once beside them.

    from apps.report import build_report
    index = build_report("runs/", "runs/report")       # every folder under runs/ holding a result.json
    index = build_report([Path("runs/massive")], "out")  # or an explicit list of result folders

Pages are rebuilt only from what `Result.save` wrote (result.json + arrays.safetensors), through the Result
subclass the registry names for result.json's "analysis". A page whose analysis package is missing, whose folder
cannot be loaded, or whose figures() raises still gets written, with an error box, the headline table and the
provenance, so one broken result never costs the other pages.
"""

from __future__ import annotations

import json
import os
import re
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from interp.errors import InterpError
from interp.fileio import atomic_write_bytes
from interp.results import Result

from . import render
from .provenance import provenance_rows
from .registry import Entry, analysis_order, normalize, result_class

INDEX = "index.html"


class ReportError(InterpError):
    """The report builder was pointed at something that holds no saved results."""


@dataclass
class PageInfo:
    """What the index needs to know about one written page."""

    slug: str
    source: Path
    analysis: str
    title: str
    summary: list[tuple[str, str]] = field(default_factory=list)
    headline: str = ""
    model: str = ""
    n_figures: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def find_result_dirs(results: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Result folders: each given folder holding result.json, else every folder below it that does (sorted)."""
    items = [results] if isinstance(results, (str, os.PathLike)) else list(results)
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.name == "result.json" and path.is_file():
            path = path.parent  # a result's own file stands for its folder
        if (path / "result.json").is_file():
            found.append(path)
        elif path.is_dir():
            found += sorted(p.parent for p in path.rglob("result.json"))
        elif path.exists():
            raise ReportError(f"{path} is a file, not a result folder",
                              hint="pass a result folder (written by --out), its parent, or its result.json")
        else:
            raise ReportError(f"{path} does not exist", hint="pass a result folder (written by --out) or its parent")
    seen: set[Path] = set()
    unique = [p for p in found if not (p.resolve() in seen or seen.add(p.resolve()))]
    if not unique:
        raise ReportError(f"no result.json under {', '.join(str(Path(i)) for i in items)}",
                          hint="run `interp analyze NAME --out DIR` first, then `interp report DIR`")
    return unique


def write_plotly_js(out_dir: Path) -> Path:
    """Write the installed plotly package's plotly.js next to the pages (once; rewritten only if it changed)."""
    from plotly.offline import get_plotlyjs

    data = get_plotlyjs().encode()
    path = out_dir / render.PLOTLY_JS
    if not (path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data):
        atomic_write_bytes(path, data)
    return path


def _slug(path: Path, analysis: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.name).strip("-.") or analysis or "result"
    if base.lower() == "index":
        base = f"{base}-result"
    slug, k = base, 2
    while slug.lower() in taken:
        slug, k = f"{base}-{k}", k + 1
    taken.add(slug.lower())
    return slug


def _describe(e: BaseException) -> str:
    """Exception text plus the innermost frame, enough to find the bug without a full traceback."""
    frames = traceback.extract_tb(e.__traceback__)
    where = f"\n  at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    hint = getattr(e, "hint", None)
    return f"{type(e).__name__}: {e}{where}" + (f"\n  hint: {hint}" if hint else "")


def _load(source: Path, registry: Mapping[str, Entry] | None) -> tuple[dict, Result | None, bool, list[str]]:
    """(result.json doc, loaded result or None, whether it is the analysis' own class, errors)."""
    errors: list[str] = []
    try:
        doc = json.loads((source / "result.json").read_text())
        if not isinstance(doc, dict):
            raise ValueError("result.json does not hold a JSON object")
    except (OSError, ValueError) as e:
        return {}, None, False, [f"cannot read {source / 'result.json'}: {_describe(e)}"]
    analysis = str(doc.get("analysis", "result"))
    try:
        cls = result_class(analysis, registry)
        return doc, cls.load(source), True, errors
    except Exception as e:  # fall back to the base class: the summary table and provenance still show
        errors.append(_describe(e))
    try:
        return doc, Result.load(source), False, errors
    except Exception as e:
        errors.append(_describe(e))
        return doc, None, False, errors


def _figures(result: Result, errors: list[str]) -> list[str]:
    """Figure blocks for every figure that serialises; failures become error text."""
    try:
        figs = result.figures() or {}
        if not isinstance(figs, Mapping):
            raise TypeError(f"figures() returned {type(figs).__name__}, expected dict[str, Figure]")
    except Exception as e:
        errors.append(f"figures() failed: {_describe(e)}")
        return []
    blocks = []
    for i, (name, fig) in enumerate(figs.items()):
        try:
            if not _has_data(fig):  # a blank plot would look like a rendering failure
                blocks.append(render.note_block(str(name), "nothing to plot: every value of this figure is missing "
                                                           "(NaN) or the study produced none; see the details below"))
                continue
            blocks.append(render.figure_block(f"fig-{i}", str(name), fig, type(result).captions.get(str(name), "")))
        except Exception as e:
            errors.append(f"figure {name!r} could not be serialised: {_describe(e)}")
    return blocks


def _has_data(fig: Any) -> bool:
    """Whether any trace of a figure has a finite value to draw: its values (y, heatmap z, pie values) are not all
    NaN or empty. Tables count with any cell, categorical values count, trace kinds not known here always count."""
    traces = fig.get("data", []) if isinstance(fig, Mapping) else getattr(fig, "data", ())
    for trace in traces:
        get = trace.get if isinstance(trace, Mapping) else (lambda k, t=trace: getattr(t, k, None))
        if get("type") == "table":
            cells = get("cells")
            values = cells.get("values") if isinstance(cells, Mapping) else getattr(cells, "values", None)
            if values is not None and any(len(c) for c in values):
                return True
            continue
        kind = get("type") or "scatter"
        key = {"heatmap": "z", "contour": "z", "surface": "z", "pie": "values", "scatterpolar": "r"}.get(kind, "y")
        if kind == "bar" and get("orientation") == "h":
            key = "x"
        v = get(key)
        if v is None:
            return True  # a trace kind this check does not know: never hide it
        try:
            arr = np.asarray(v, dtype=float)
        except (TypeError, ValueError):
            return True  # labels, dates: something to draw
        if arr.size and np.isfinite(arr).any():
            return True
    return False


def _page(info: PageInfo, doc: dict, result: Result | None, own_class: bool) -> str:
    """The full HTML of one result page."""
    blocks = _figures(result, info.errors) if result is not None and own_class else []
    info.n_figures = len(blocks)
    summary = result.summary_rows() if result is not None else []
    info.summary = summary
    info.headline = result.headline() if result is not None else ""
    findings = result.findings_html() if result is not None else ""
    prov = result.provenance if result is not None else doc.get("provenance", {})
    prov_rows = provenance_rows(prov if isinstance(prov, dict) else {"provenance": prov}, base=info.source)
    info.model = next((v for k, v in prov_rows if k == "model"), "") or next(
        (v for k, v in prov_rows if k == "token source"), "")
    config = result.config if result is not None else doc.get("config", {})
    parts = [render.error_box(f"Problem with this result ({len(info.errors)})", "\n\n".join(info.errors))
             if info.errors else ""]
    parts.append(
        f"<section><p class='muted'>analysis <code>{render.esc(info.analysis)}</code> · from "
        f"<code>{render.esc(info.source)}</code></p>"
        + (f"<h2>Findings</h2>{findings}" if findings else "")
        + "<h2>Headline numbers</h2>"
        + (render.table(summary, ["quantity", "value"], numeric_cols=(1,)) if summary else "<p>(none)</p>")
        + "</section>")
    parts.append("<section><h2>Provenance</h2>"
                 + (render.table(prov_rows, ["field", "value"]) if prov_rows else "<p>(none recorded)</p>")
                 + "</section>")
    if blocks:
        parts.append(f"<section><h2>Figures ({len(blocks)})</h2>{''.join(blocks)}</section>")
    if isinstance(config, dict) and config:
        parts.append("<section><h2>Configuration</h2>"
                     + render.table([(k, _config_cell(k, v)) for k, v in config.items()], ["option", "value"])
                     + "</section>")
    details = result.details if result is not None else doc.get("details")
    if details:
        parts.append(f"<section><details><summary>All details (JSON)</summary>{render.json_pre(details)}"
                     "</details></section>")
    nav = f"<a href='{render.INDEX_LINK}'>← all results</a>"
    return render.page(f"{info.title} — interp report", "".join(parts), heading=info.title, nav=nav,
                       with_plotly=bool(blocks))


def _config_cell(key: str, value: Any) -> Any:
    """A Config value as the page shows it: JSON for structures; step -1 says that it means the final checkpoint."""
    if key == "step" and value == -1:
        return "-1 (the final checkpoint; provenance names it)"
    return json.dumps(value, default=str) if isinstance(value, (dict, list)) else value


def browser_folders(out: Path) -> list[str]:
    """Sub-folders of the report folder that hold a latent browser (`interp browse --out REPORT/NAME`)."""
    return sorted(p.name for p in out.iterdir() if p.is_dir() and (p / "index.html").is_file()
                  and (p / "data" / "meta.js").is_file()) if out.is_dir() else []


def _index(pages: list[PageInfo], title: str, browsers: Sequence[str] = ()) -> str:
    """The index page: one row per result, linking its page, with status and the first headline numbers; then a
    link to each latent browser folder beside the pages."""
    rows = []
    for p in pages:
        status = ("<span class='badge ok'>ok</span>" if p.ok
                  else f"<span class='badge bad' title='{render.esc(p.errors[0][:300])}'>error</span>")
        head = render.esc(p.headline) if p.headline else "<br>".join(
            f"{render.esc(k)} = {render.esc(v)}" for k, v in p.summary[:4])
        rows.append(f"<tr><td><a href='{render.esc(p.slug)}.html'>{render.esc(p.title)}</a></td>"
                    f"<td><code>{render.esc(p.analysis)}</code></td><td>{render.esc(p.model)}</td>"
                    f"<td class='num'>{p.n_figures}</td><td>{status}</td><td>{head}</td>"
                    f"<td class='muted'>{render.esc(p.source)}</td></tr>")
    table = ("<table><thead><tr><th>result</th><th>analysis</th><th>model / data</th><th>figures</th><th>status</th>"
             f"<th>findings</th><th>folder</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    n_bad = sum(not p.ok for p in pages)
    note = f"{len(pages)} result(s)" + (f", {n_bad} with problems" if n_bad else "")
    extra = ""
    if browsers:
        links = "".join(f"<li><a href='{render.esc(b)}/index.html'>{render.esc(b)}</a></li>" for b in browsers)
        extra = f"<section><h2>Latent browsers</h2><ul>{links}</ul></section>"
    return render.page(title, f"<section><p class='muted'>{render.esc(note)}</p>{table}</section>{extra}")


def build_report(results: str | os.PathLike | Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
                 registry: Mapping[str, Entry] | None = None, title: str = "interp report",
                 progress: bool = False) -> Path:
    """Write one page per result folder, an index and plotly.min.js into `out_dir`; return the index path.

    results:  a result folder, a parent folder searched recursively for result.json, or a list of either
    registry: extra/overriding analysis -> Result subclass (or module path) entries (tests, plug-in analyses)
    progress: show a tqdm bar over the results
    """
    return build_report_pages(results, out_dir, registry=registry, title=title, progress=progress)[0]


def build_report_pages(results: str | os.PathLike | Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
                       registry: Mapping[str, Entry] | None = None, title: str = "interp report",
                       progress: bool = False) -> tuple[Path, list[PageInfo]]:
    """`build_report`, also returning every page's PageInfo (its `errors` list the result's problems)."""
    sources = find_result_dirs(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_plotly_js(out)
    taken: set[str] = set()
    pages: list[PageInfo] = []
    iterator: Any = sources
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(sources, desc="report", unit="page")
    for source in iterator:
        doc, result, own_class, errors = _load(source, registry)
        analysis = str(doc.get("analysis", "unknown"))
        title_text = (result.title if own_class and result is not None else None) or doc.get("title") or analysis
        info = PageInfo(slug=_slug(source, analysis, taken), source=source, analysis=analysis, title=str(title_text),
                        errors=errors)
        html_text = _page(info, doc, result, own_class)
        atomic_write_bytes(out / f"{info.slug}.html", html_text.encode())
        pages.append(info)
    index = out / INDEX
    order = analysis_order()
    pages.sort(key=lambda p: (order.get(normalize(p.analysis), len(order)), p.analysis, str(p.source)))
    atomic_write_bytes(index, _index(pages, title, browser_folders(out)).encode())
    _remove_stale(out, {f"{p.slug}.html" for p in pages} | {INDEX})
    return index, pages


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Delete pages an earlier build wrote (generator marker) for results that are gone; never other files."""
    marker = f"<meta name='generator' content='{render.GENERATOR}'>"
    for path in out.glob("*.html"):
        if path.name not in keep:
            try:
                with path.open(encoding="utf-8", errors="replace") as f:
                    head = f.read(4096)
            except OSError:
                continue
            if marker in head:
                path.unlink(missing_ok=True)
