"""Synthetic Result subclasses and a headless-Chromium harness shared by the report tests (not a test module)."""

from __future__ import annotations

import json
import os
import shutil
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
    """Three figures (scatter with token hover text, heatmap, bars) built only from arrays/details."""

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
        return {"token trace": trace, "R² matrix": heat, "headline bars": bars}


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
# middle of the first bar, or the centre of the first subplot for anything else (heatmaps).
HOVER_POINT_JS = """
(div) => {
  div.scrollIntoView({block: 'center'});
  const r = div.getBoundingClientRect(), fl = div._fullLayout, cd = div.calcdata || [];
  for (const c of cd) {
    const tr = c[0].trace; if (tr.visible !== true || tr.hoverinfo === 'skip') continue;
    const sp = fl._plots[(tr.xaxis || 'x') + (tr.yaxis || 'y')]; if (!sp) continue;
    const xa = sp.xaxis, ya = sp.yaxis;
    let px, py;
    if (tr.type === 'scatter' || tr.type === 'scattergl') {
      const pt = c.find(p => Number.isFinite(p.x) && Number.isFinite(p.y)); if (!pt) continue;
      px = xa.c2p(pt.x); py = ya.c2p(pt.y);
    } else if (tr.type === 'bar' && tr.orientation !== 'h') {
      const pt = c[0]; px = xa.c2p(pt.p); py = ya.c2p((pt.b || 0) + pt.s / 2);
    } else { px = xa._length / 2; py = ya._length / 2; }
    return {x: r.left + xa._offset + px, y: r.top + ya._offset + py};
  }
  return {x: r.left + fl._size.l + fl._size.w / 2, y: r.top + fl._size.t + fl._size.h / 2};
}
"""
