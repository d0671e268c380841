"""Plotly figures of a LIBResult, built only from its stored summary, details and arrays."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.results import fmt

_COLORS = {"lib": "#1f77b4", "pca": "#ff7f0e"}


def node_ablation_figure(res) -> go.Figure:
    """Accuracy vs number of kept directions per node layer, LIB vs PCA."""
    na = res.details["node_ablation"]
    names = list(na["layers"])
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, shared_yaxes=True)
    for c, name in enumerate(names, start=1):
        for tag, row in na["layers"][name].items():
            fig.add_trace(go.Scatter(x=row["k"], y=row["score"], mode="lines+markers", name=tag.upper(),
                                     legendgroup=tag, showlegend=c == 1, line={"color": _COLORS.get(tag)}),
                          row=1, col=c)
        fig.update_xaxes(title_text="directions kept", type="log", row=1, col=c)
    fig.update_yaxes(title_text="test accuracy", row=1, col=1)
    fig.update_layout(title="Node ablation: LIB vs PCA", height=380)
    return fig


def edge_ablation_figure(res) -> go.Figure:
    """Accuracy vs number of kept edges per section (bisection points), LIB vs PCA."""
    ea = res.details["edge_ablation"]
    tags = [t for t in ("lib", "pca") if t in ea]
    names = [n for n in ea[tags[0]] if n != "total"]
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[f"from {n}" for n in names], shared_yaxes=True)
    for c, name in enumerate(names, start=1):
        for tag in tags:
            tr = np.asarray(ea[tag][name]["trace"], dtype=float)
            fig.add_trace(go.Scatter(x=tr[:, 0], y=tr[:, 1], mode="markers+lines", name=tag.upper(),
                                     legendgroup=tag, showlegend=c == 1, line={"color": _COLORS[tag]}), row=1, col=c)
        fig.update_xaxes(title_text="edges kept", type="log", row=1, col=c)
    fig.update_yaxes(title_text="accuracy", row=1, col=1)
    fig.update_layout(title="Edge ablation (bisection to within tolerance)", height=380)
    return fig


def interaction_graph_figure(res, n_nodes: int = 12, n_edges: int = 40) -> go.Figure:
    """Layered node-link drawing of the LIB graph: leading directions per layer, strongest edges."""
    names = res.details["node_layers"]
    n_sec = sum(1 for k in res.arrays if k.startswith("edges_lib_"))
    fig = go.Figure()
    for l in range(n_sec):
        E = np.asarray(res.arrays[f"edges_lib_{l}"])[:n_nodes, :n_nodes]
        if E.size == 0:
            continue
        w = E / (E.max() + 1e-300)
        idx = np.dstack(np.unravel_index(np.argsort(-w, axis=None)[:n_edges], w.shape))[0]
        for i, j in idx:
            fig.add_trace(go.Scatter(x=[l, l + 1], y=[-j, -i], mode="lines", hoverinfo="text",
                                     text=f"{names[l]}[{j}] -> {names[l + 1]}[{i}]: {fmt(E[i, j], '.3g')}",
                                     line={"width": 0.5 + 6 * float(w[i, j]), "color": "rgba(31,119,180,0.6)"},
                                     showlegend=False))
    for l, name in enumerate(names[: n_sec + 1]):
        lam = res.arrays.get(f"lambda_{l}")
        n = n_nodes if lam is None else min(n_nodes, len(lam))
        size = 12 if lam is None else 8 + 14 * np.sqrt(np.asarray(lam[:n]) / (np.max(lam[:n]) + 1e-300))
        fig.add_trace(go.Scatter(x=[l] * n, y=[-k for k in range(n)], mode="markers", name=name,
                                 marker={"size": size, "color": "black"},
                                 text=[f"{name}[{k}]" for k in range(n)], hoverinfo="text", showlegend=False))
    fig.update_xaxes(tickvals=list(range(n_sec + 1)), ticktext=names[: n_sec + 1])
    fig.update_yaxes(visible=False)
    fig.update_layout(title=f"LIB interaction graph (top {n_nodes} directions, {n_edges} strongest edges per section)",
                      height=480)
    return fig


def fourier_figure(res) -> go.Figure:
    """Fourier power fractions of the leading LIB directions: cos(kx)+cos(ky) and cos(k(x+y)) per layer."""
    names = list(res.details["fourier"])
    fig = make_subplots(rows=2, cols=len(names), subplot_titles=[f"{n}: {t}" for t in ("cos kx + cos ky", "cos k(x+y)")
                                                                 for n in names], vertical_spacing=0.12)
    for c, name in enumerate(names, start=1):
        for r, kind in enumerate(("single", "sum"), start=1):
            A = np.asarray(res.arrays[f"fourier_{name}_{kind}"])
            fig.add_trace(go.Heatmap(z=A, x=np.arange(1, A.shape[1] + 1), y=np.arange(A.shape[0]), zmin=0, zmax=1,
                                     colorscale="Viridis", showscale=(c == len(names) and r == 1)), row=r, col=c)
            fig.update_xaxes(title_text="frequency k", row=r, col=c)
            fig.update_yaxes(title_text="direction", autorange="reversed", row=r, col=c)
    fig.update_layout(title="Fourier spectra of LIB directions (fraction of power)", height=650)
    return fig
