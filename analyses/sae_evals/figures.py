"""Figures of the SAE evals, rebuilt from the stored rows and arrays."""

from __future__ import annotations

from typing import Any

import numpy as np


def _hooks(row: dict) -> str:
    """"hook" for an SAE, "input hook → output hook" for a transcoder (rows of older results have no hook_out)."""
    out = row.get("hook_out", row["hook"])
    return row["hook"] if out == row["hook"] else f"transcoder {row['hook']} → {out}"


def build_figures(res) -> dict[str, Any]:
    """The L0 / explained-variance trade-off (transcoders as diamonds), CE loss recovered, and the density lines."""
    import plotly.graph_objects as go

    from interp.results import fmt

    rows = res.details.get("saes", [])
    figs: dict[str, Any] = {}
    tradeoff = go.Figure(go.Scatter(
        x=[r["l0"] for r in rows], y=[r["explained_variance"] for r in rows], mode="markers+text",
        text=[r["name"] for r in rows], textposition="top center",
        marker={"symbol": ["diamond" if r.get("kind") == "transcoder" else "circle" for r in rows]},
        hovertext=[f"{r['name']} ({_hooks(r)}): L0 {fmt(r['l0'])}, FVU {fmt(r['fvu'])}" for r in rows]))
    tradeoff.update_layout(title="Sparsity against reconstruction", xaxis_title="L0 (latents per token)",
                           yaxis_title="explained variance", height=420)
    figs["tradeoff"] = tradeoff
    if rows and "ce_loss_recovered_zero" in rows[0]:
        bars = go.Figure()
        for key, label in (("ce_loss_recovered_zero", "vs zero ablation"), ("ce_loss_recovered_mean",
                                                                             "vs mean ablation")):
            bars.add_trace(go.Bar(x=[r["name"] for r in rows], y=[r[key] for r in rows], name=label,
                                  hovertext=[_hooks(r) for r in rows]))
        bars.update_layout(barmode="group", title="CE loss recovered", yaxis_title="fraction", height=420)
        figs["loss_recovered"] = bars
    edges = res.arrays.get("density_edges")
    if edges is not None:
        centres = (np.asarray(edges)[:-1] + np.asarray(edges)[1:]) / 2
        hist = go.Figure()
        for r in rows:
            counts = res.arrays.get(f"density_hist.{r['name']}")
            if counts is not None:
                hist.add_trace(go.Scatter(x=centres, y=counts, mode="lines", name=r["name"]))
        hist.update_layout(title="Feature density", xaxis_title="log10 fraction of tokens a latent fires on",
                           yaxis_title="latents", height=420)
        figs["density"] = hist
    return figs
