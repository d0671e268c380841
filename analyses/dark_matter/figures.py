"""Plotly figures of a DarkMatterResult, built only from its summary, details and arrays (so a loaded one redraws)."""

from __future__ import annotations

from typing import Any

import numpy as np

from interp.results import fmt

_COLORS = {"topk": "#1f77b4", "jumprelu": "#d62728", "standard": "#2ca02c"}


def _scaling(res) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from .scaling import power_law

    rows = res.details.get("saes", [])
    fits = res.details.get("power_law_fits", {})
    fig = make_subplots(rows=1, cols=2, subplot_titles=("FVU vs SAE width", "Test R² of linear prediction"))
    for arch in dict.fromkeys(r["architecture"] for r in rows):
        sel = [r for r in rows if r["architecture"] == arch]
        w = np.array([r["d_sae"] for r in sel], dtype=float)
        col = _COLORS.get(arch, "#555")
        for q, dash, label in (("fvu_sae", "solid", "FVU(Sae)"), ("fvu_sae_plus_linear", "dot", "FVU(Sae+linear)")):
            fig.add_trace(go.Scatter(x=w, y=[r[q] for r in sel], mode="markers", name=f"{arch} {label}",
                                     marker={"color": col, "symbol": "circle" if dash == "solid" else "diamond"},
                                     text=[f"{r['name']}<br>L0={fmt(r['l0'], '.1f')}" for r in sel]), 1, 1)
            fit = (fits.get(arch) or {}).get(q)
            if fit:
                ws = np.geomspace(w.min() / 2, w.max() * 4, 60)
                fig.add_trace(go.Scatter(x=ws, y=power_law(ws, fit["c"], fit["a"], fit["m"]), mode="lines",
                                         line={"color": col, "dash": dash},
                                         name=f"{arch} {label} fit: {fmt(fit['c'], '.3f')} + "
                                         f"{fmt(fit['a'], '.3g')}·W^-{fmt(fit['m'], '.2f')}"), 1, 1)
        for q, sym in (("r2_vec", "circle"), ("r2_norm", "square")):
            fig.add_trace(go.Scatter(x=w, y=[r[q] for r in sel], mode="lines+markers", marker={"symbol": sym},
                                     line={"color": col, "dash": "solid" if q == "r2_vec" else "dash"},
                                     name=f"{arch} R² {'error vector' if q == 'r2_vec' else '‖error‖²'}"), 1, 2)
    fig.update_xaxes(type="log", title="SAE width (latents)")
    fig.update_yaxes(title="FVU", row=1, col=1)
    fig.update_yaxes(title="test R²", row=1, col=2)
    fig.update_layout(title="Scaling of SAE error with width (power law c + a·W^-m)", height=450)
    return fig


def _norm_bars(res) -> Any:
    import plotly.graph_objects as go

    rows = res.details.get("saes", [])
    targets = res.details.get("norm_targets", [])
    suite = np.asarray(res.arrays.get("norm_suite_r2", np.zeros((0, len(targets)))))
    fig = go.Figure()
    for i, r in enumerate(rows):
        fig.add_trace(go.Bar(x=[f"‖{t}‖²" for t in targets], y=suite[i], name=r["name"]))
    base = res.details.get("norm_baselines", {})
    if base:
        fig.add_trace(go.Bar(x=[f"baseline: {k}" for k in base], y=list(base.values()),
                             name=f"‖SaeError‖² baselines ({res.summary.get('reference_sae')})",
                             marker={"color": "#7f7f7f"}))
    fig.add_hline(y=0.9, line_dash="dot", annotation_text="paper: > 0.9 for ‖SaeError‖²")
    fig.update_layout(barmode="group", title="Norm prediction from x: test R² (Fig. 7 / Fig. 13)",
                      yaxis_title="test R²", height=450)
    return fig


def _per_token(res) -> dict[str, Any]:
    import plotly.graph_objects as go

    out = {}
    for arch, names in res.details.get("per_token_names", {}).items():
        m = np.asarray(res.arrays.get(f"per_token_r2_{arch}"))
        gain = np.asarray(res.arrays.get(f"per_token_gain_pct_{arch}"))
        text = [[f"R²={fmt(m[i, j], '.3f')}<br>+nonlinear: {fmt(gain[i, j], '.1f')}% of the rest"
                 for j in range(len(names))] for i in range(len(names))]
        fig = go.Figure(go.Heatmap(z=m, x=names, y=names, text=text, hoverinfo="text+x+y", colorscale="Viridis",
                                   zmin=0, zmax=1, colorbar={"title": "R²"}))
        fig.update_layout(title=f"Per-token error-norm predictability across widths ({arch}): "
                                "row SAE predicts column SAE", xaxis_title="predicted width",
                          yaxis_title="predictor width", height=450)
        out[f"per_token_r2_{arch}"] = fig
    return out


def _trace(res) -> Any:
    import plotly.graph_objects as go

    toks = res.details.get("trace_tokens", [])
    pos = res.details.get("trace_positions", [[0, i] for i in range(len(toks))])
    x = np.arange(len(toks))
    hover = [f"{t!r} (seq {p[0]}, pos {p[1]})" for t, p in zip(toks, pos)]
    fig = go.Figure()
    for key, name in (("trace_error_norm", "‖SaeError‖"), ("trace_linear_norm", "‖LinearError‖"),
                      ("trace_nonlinear_norm", "‖NonlinearError‖")):
        if key in res.arrays:
            fig.add_trace(go.Scatter(x=x, y=np.asarray(res.arrays[key]), mode="lines+markers", name=name,
                                     text=hover, hovertemplate="%{text}<br>%{y:.3f}"))
    fig.update_layout(title=f"Token trace: linear vs nonlinear error norms ({res.summary.get('reference_sae')})",
                      xaxis_title="row (consecutive tokens)", yaxis_title="norm", height=400)
    return fig


def _cross(res) -> Any:
    import plotly.graph_objects as go

    cross = res.details.get("cross_component", {})
    table = cross.get("r2", {})
    fig = go.Figure()
    for t in cross.get("targets", []):
        fig.add_trace(go.Bar(x=list(table), y=[table[s][t] for s in table], name=f"target: {t}"))
    fig.update_layout(barmode="group", title="Regressing the SAE error from other components (Fig. 10b)",
                      yaxis_title="test R² (mean over dims)", height=450)
    return fig


def _pursuit(res) -> Any:
    import plotly.graph_objects as go

    rows = res.details.get("pursuit", [])
    names = [r["name"] for r in rows]
    fig = go.Figure()
    for key, label in (("fvu_encoder", "FVU encoder"), ("fvu_pursuit", "FVU pursuit"),
                       ("nonlinear_fvu_encoder", "nonlinear FVU encoder"),
                       ("nonlinear_fvu_pursuit", "nonlinear FVU pursuit")):
        fig.add_trace(go.Bar(x=names, y=[r[key] for r in rows], name=label))
    fig.update_layout(barmode="group", title="Inference-time gradient pursuit vs the SAE encoder", height=400,
                      xaxis_title="SAE", yaxis_title="FVU (fraction of variance unexplained)")
    return fig


def build_figures(res) -> dict[str, Any]:
    """All figures by name (empty studies are skipped)."""
    figs = {"scaling": _scaling(res), "norm_prediction": _norm_bars(res), **_per_token(res),
            "token_trace": _trace(res)}
    if res.details.get("cross_component", {}).get("r2"):
        figs["cross_component"] = _cross(res)
    if res.details.get("pursuit"):
        figs["pursuit"] = _pursuit(res)
    return figs
