"""Plotly figures of a MassiveResult, built only from its summary/details/arrays (a loaded result redraws)."""

from __future__ import annotations

from typing import Any

import numpy as np

from interp.results import fmt


def ratio_heatmap(steps: np.ndarray, ratio: np.ndarray, name: str) -> Any:
    """log10 top-1/median ratio, layers × checkpoints."""
    import plotly.graph_objects as go

    z = np.log10(np.asarray(ratio, dtype=np.float64).T)  # [L, T]
    fig = go.Figure(go.Heatmap(z=z, x=[str(int(s)) for s in steps], y=[f"layer {i}" for i in range(z.shape[0])],
                               colorscale="Viridis", colorbar={"title": "log10 ratio"},
                               customdata=10**z,
                               hovertemplate="step %{x}<br>%{y}<br>ratio %{customdata:.1f}<extra></extra>"))
    fig.update_layout(title=f"top-1 / median |h| ({name})", xaxis_title="checkpoint (step)", yaxis_title="layer")
    fig.update_xaxes(type="category")
    return fig


def trajectories(steps: np.ndarray, ratio: np.ndarray, grid: np.ndarray, curves: np.ndarray,
                 fits: list[dict]) -> Any:
    """Per-layer ratio vs step (log x, step+1) with the fitted Eq. 14 curves (dashed) and their R²."""
    import plotly.colors as pc
    import plotly.graph_objects as go

    fig = go.Figure()
    colors = pc.qualitative.Plotly
    for li in range(ratio.shape[1]):
        c = colors[li % len(colors)]
        fig.add_trace(go.Scatter(x=np.asarray(steps) + 1, y=ratio[:, li], mode="markers+lines", name=f"layer {li}",
                                 line={"color": c, "width": 1}, legendgroup=str(li)))
        if li < len(curves):
            f = fits[li]
            fig.add_trace(go.Scatter(x=np.asarray(grid) + 1, y=curves[li], mode="lines", legendgroup=str(li),
                                     name=f"fit {li} (R² {fmt(f['r2'], '.3f')}, {f['regime']})",
                                     line={"color": c, "dash": "dash"}))
    fig.update_layout(title="per-layer top-1/median ratio over training with fitted curves",
                      xaxis_title="step + 1", yaxis_title="top-1 / median |h|")
    fig.update_xaxes(type="log")
    return fig


def top_table(rows: list[dict]) -> Any:
    """Table of the final checkpoint's top-1 activations per layer and input, with their tokens."""
    import plotly.graph_objects as go

    cols = ["layer", "input", "position", "token", "dim", "value", "ratio"]
    vals = [[(f"{r[c]:.2f}" if isinstance(r[c], float) else repr(r[c]) if c == "token" else r[c]) for r in rows]
            for c in cols]
    fig = go.Figure(go.Table(header={"values": cols}, cells={"values": vals}))
    fig.update_layout(title="top-1 activation per layer and input (final checkpoint)")
    return fig


def interventions(rows: list[dict]) -> Any:
    """Loss change of zero/mean interventions vs the random-dims control."""
    import plotly.graph_objects as go

    modes = [r["mode"] for r in rows]
    fig = go.Figure([go.Bar(name="massive dims", x=modes, y=[r["delta_loss"] for r in rows]),
                     go.Bar(name="random dims (control)", x=modes, y=[r.get("delta_loss_control") for r in rows])])
    lay = rows[0]["layer"] if rows else "?"
    fig.update_layout(title=f"loss change from intervening at layer {lay} output", yaxis_title="Δ loss (nats/token)",
                      barmode="group")
    return fig


def build_figures(result) -> dict[str, Any]:
    """All figures of a MassiveResult."""
    a, d = result.arrays, result.details
    agg = result.config.get("aggregate", "ratio_of_means")
    figs: dict[str, Any] = {}
    if "steps" in a and agg in a:
        figs["ratio_heatmap"] = ratio_heatmap(a["steps"], a[agg], agg)
        figs["trajectories"] = trajectories(a["steps"], a[agg], a.get("fit_grid", np.zeros(0)),
                                            a.get("fit_curves", np.zeros((0, 0))), d.get("fits", []))
    if d.get("top_activations_final"):
        figs["top_activations"] = top_table(d["top_activations_final"])
    if d.get("interventions"):
        figs["interventions"] = interventions(d["interventions"])
    return figs
