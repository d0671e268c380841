"""Synthetic Result subclasses and a headless-Chromium harness shared by the report tests (not a test module)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from interp.results import Result

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
PAYLOADS = (SCRIPT, IMG, "<!--", "</script><script>alert(2)</script>", "&lt;b&gt;", "\u2028")
CHROMIUM = os.environ.get("INTERP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


class SynthResult(Result):
    """Four figures (token trace with hover text, heatmap, bars, WebGL scatter) built only from arrays/details."""

    analysis: ClassVar[str] = "synthetic"
    title: ClassVar[str] = "Synthetic analysis"

    def figures(self) -> dict[str, Any]:
        import plotly.graph_objects as go

        tokens = self.details["tokens"]
        trace = go.Figure(go.Scatter(x=self.arrays["x"], y=self.arrays["y"], mode="lines+markers", text=tokens,
                                     hovertemplate="token %{text}<br>error %{y:.3f}<extra></extra>"))
        trace.update_layout(title=f"token trace of {self.provenance.get('model', '')}", hovermode="closest")
        heat = go.Figure(go.Heatmap(z=self.arrays["matrix"], x=tokens[: self.arrays["matrix"].shape[1]],
                                    colorscale="Viridis"))
        heat.update_layout(title="R² matrix")
        bars = go.Figure(go.Bar(x=list(self.summary), y=[float(v) for v in self.summary.values()]))
        bars.update_layout(title="headline bars")
        cloud = go.Figure(go.Scattergl(x=self.arrays["y"], y=self.arrays["x"], mode="markers", text=tokens))
        cloud.update_layout(title="token cloud (WebGL)")
        return {"token trace": trace, "R² matrix": heat, "headline bars": bars, "token cloud": cloud}


class BrokenFiguresResult(Result):
    """figures() raises: the page must show the error box and still the summary."""

    analysis: ClassVar[str] = "broken"
    title: ClassVar[str] = "Broken figures"

    def figures(self) -> dict[str, Any]:
        raise RuntimeError("figure code exploded " + SCRIPT)


REGISTRY = {"synthetic": SynthResult, "broken": BrokenFiguresResult, "missing_pkg": "analyses.no_such_analysis"}


def synth_result(tokens: list[str], model: str = "toy-pythia-4l", n: int = 12) -> SynthResult:
    """A deterministic synthetic result whose tokens/model come from the caller (e.g. injection payloads)."""
    rng = np.random.default_rng(0)
    toks = [tokens[i % len(tokens)] for i in range(n)]
    return SynthResult(
        summary={"fvu": 0.125, "r2": 0.875, "n_layers": 4},
        details={"tokens": toks, "table": [{"token": t, "value": i} for i, t in enumerate(toks)]},
        arrays={"x": np.arange(n, dtype=np.float64), "y": rng.random(n), "matrix": rng.random((4, n))},
        config={"width": 64, "prompt": toks[0]},
        provenance={"model": model, "checkpoint": 1000, "hooks": ["blocks.1.hook_resid_post"],
                    "token_source": "embedded", "n_tokens": 4096,
                    "environment": {"versions": {"python": "3.11", "torch": "2.13"}, "created": "2026-01-01"}},
    )


def make_results(root: Path, *, hostile: bool = True) -> list[Path]:
    """Write a set of result folders: clean, hostile tokens/model, broken figures, unknown and missing analyses."""
    dirs = [synth_result(["the", " cat", " sat", " on", " mat"]).save(root / "clean")]
    if hostile:
        bad = list(PAYLOADS) + [" ok"]
        dirs.append(synth_result(bad, model=SCRIPT + IMG).save(root / "hostile"))
    broken = BrokenFiguresResult(summary={"loss": 1.5, "label": SCRIPT}, provenance={"model": IMG})
    dirs.append(broken.save(root / "broken"))
    if hostile:  # a folder name that is itself markup (shown on the page and the index)
        dirs.append(broken.save(root / IMG.replace("/", "_")))
    unknown = root / "unknown"
    unknown.mkdir(parents=True, exist_ok=True)
    (unknown / "result.json").write_text(json.dumps({"analysis": SCRIPT, "title": IMG, "summary": {"x": 1.0},
                                                     "provenance": {"model": SCRIPT}}))
    missing = Result(summary={"y": 2.0}, provenance={"model": "m"})
    missing_dir = missing.save(root / "missing")
    doc = json.loads((missing_dir / "result.json").read_text())
    doc["analysis"] = "missing_pkg"
    (missing_dir / "result.json").write_text(json.dumps(doc))
    return dirs + [unknown, missing_dir]


def browser_skip_reason() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; no `playwright install` needed)"
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    return None


# Pixel position (viewport) of a hoverable spot in a rendered plotly div: first point of the first scatter trace,
# middle of the tallest bar of the first bar trace, the centre of the first subplot for other cartesian traces
# (heatmaps), the centre of the plot area for the rest; null when no trace can show a tooltip (tables, indicators).
HOVER_POINT_JS = """
(div) => {
  div.scrollIntoView({block: 'center'});
  const r = div.getBoundingClientRect(), fl = div._fullLayout, cd = div.calcdata || [];
  const NO_HOVER = ['table', 'indicator'];  // trace types plotly never shows a tooltip for
  let hoverable = false;
  for (const c of cd) {
    const tr = c[0].trace;
    if (tr.visible !== true || tr.hoverinfo === 'skip' || NO_HOVER.includes(tr.type)) continue;
    hoverable = true;
    const sp = fl._plots[(tr.xaxis || 'x') + (tr.yaxis || 'y')]; if (!sp) continue;
    const xa = sp.xaxis, ya = sp.yaxis;
    let px, py;
    if (tr.type === 'scatter') {
      const pt = c.find(p => Number.isFinite(p.x) && Number.isFinite(p.y)); if (!pt) continue;
      px = xa.c2p(pt.x); py = ya.c2p(pt.y);
    } else if (tr.type === 'scattergl') {  // WebGL: one calcdata entry, take the first data point
      const n = (tr.x || []).length; if (!n) continue;
      px = xa.c2p(xa.d2c(tr.x[0])); py = ya.c2p(ya.d2c(tr.y[0]));
    } else if (tr.type === 'bar' && tr.orientation !== 'h') {  // the tallest bar: a near-zero one is < 1 px high
      const pt = c.filter(p => Number.isFinite(p.s)).reduce((a, p) => (Math.abs(p.s) > Math.abs(a.s) ? p : a), c[0]);
      // pt.x is the bar's own centre (grouped bars sit beside the category position pt.p)
      px = xa.c2p(Number.isFinite(pt.x) ? pt.x : pt.p); py = ya.c2p((pt.b || 0) + pt.s / 2);
    } else { px = xa._length / 2; py = ya._length / 2; }
    return {x: r.left + xa._offset + px, y: r.top + ya._offset + py};
  }
  if (!hoverable) return null;
  return {x: r.left + fl._size.l + fl._size.w / 2, y: r.top + fl._size.t + fl._size.h / 2};
}
"""


class Visit:
    """One page load with listeners for console errors, page errors, dialogs and every request."""

    def __init__(self, browser, url: str):
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("dialog", self._dialog)
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(url, wait_until="load")

    def _dialog(self, d) -> None:
        self.dialogs.append(f"{d.type}: {d.message}")
        d.dismiss()

    def network(self, allowed_dir: Path) -> list[str]:
        """Requests that left the report folder (anything not a file:// URL under it)."""
        prefix = allowed_dir.resolve().as_uri()
        return [u for u in self.requests if not u.startswith(prefix)]

    def close(self) -> None:
        self.context.close()


def check_figures(v: Visit, expect_tooltip: bool = True) -> int:
    """Every .plot div rendered an SVG (or canvas) with traces; hovering a point shows its tooltip."""
    page = v.page
    plots = page.query_selector_all("div.plot")
    page.wait_for_function("() => [...document.querySelectorAll('div.plot')].every(d => d._fullLayout)",
                           timeout=20_000)
    for div in plots:
        info = div.evaluate("d => ({svg: d.querySelectorAll('svg.main-svg').length, "
                            "canvas: d.querySelectorAll('canvas').length, traces: (d._fullData || []).length, "
                            "failed: d.classList.contains('plot-error')})")
        assert not info["failed"] and info["traces"] > 0 and (info["svg"] or info["canvas"]), info
        if expect_tooltip:
            pos = div.evaluate(HOVER_POINT_JS)
            if pos is None:
                continue
            page.mouse.move(pos["x"], pos["y"])
            page.wait_for_function("d => d.querySelector('.hoverlayer .hovertext')", arg=div, timeout=5_000)
            assert div.evaluate("d => d.querySelector('.hoverlayer .hovertext').textContent.length") > 0
            page.mouse.move(0, 0)
    return len(plots)


def verify_report(index: Path, screenshot: Path | None = None, hover: bool = True,
                  extra: Callable[[str, Visit], None] | None = None) -> int:
    """Open every page of a built report in headless Chromium and assert: no console errors or page errors, no
    dialogs, no request outside the report folder, every figure rendered, a tooltip on hover; `extra(name, visit)`
    runs more checks per page. Returns the number of figures checked.

    Reusable by other tests (e.g. the reduced `interp demo`): `_support().verify_report(index, tmp_path / "i.png")`.
    """
    from playwright.sync_api import sync_playwright

    out = index.parent
    n = 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            for html_file in sorted(out.glob("*.html")):
                v = Visit(browser, html_file.resolve().as_uri())
                try:
                    n += check_figures(v, expect_tooltip=hover)
                    if extra is not None:
                        extra(html_file.name, v)
                    assert v.errors == [], (html_file.name, v.errors)
                    assert v.dialogs == [], (html_file.name, v.dialogs)
                    assert v.network(out) == [], (html_file.name, v.network(out))
                    if screenshot is not None and html_file == index:
                        v.page.screenshot(path=str(screenshot), full_page=True)
                finally:
                    v.close()
        finally:
            browser.close()
    return n
