"""Figures of the activation-sparsity analysis, rebuilt from the stored arrays and details."""

from __future__ import annotations

from typing import Any

import numpy as np


def build_figures(res) -> dict[str, Any]:
    import plotly.graph_objects as go

    figs: dict[str, Any] = {}
    suites = res.details.get("suites", {})
    census = go.Figure()
    for name in suites:
        steps = res.arrays.get(f"{name}.steps")
        for key in ("nnz", "fat_0.01"):
            arr = res.arrays.get(f"{name}.{key}")
            if steps is None or arr is None:
                continue
            for li in range(arr.shape[1]):
                census.add_trace(go.Scatter(x=np.maximum(steps, 1), y=arr[:, li], mode="lines+markers",
                                            name=f"{name} L{li} {key}"))
    census.update_layout(title="Kept fraction of MLP activations over training", xaxis_type="log",
                         xaxis_title="training step (step 0 drawn at 1)", yaxis_title="fraction", height=450)
    figs["census"] = census
    trends = go.Figure()
    for name, info in suites.items():
        tr = next(iter(info.get("trends", {}).values()), None)
        if not tr:
            continue
        d = np.asarray(tr["D"])
        trends.add_trace(go.Scatter(x=d, y=tr["A"], mode="markers", name=f"{name} A(c*)"))
        grid = np.geomspace(max(d.min(), 1e-9), d.max(), 100)
        from .trends import relu_law, silu_law

        for form, law in (("relu", relu_law), ("silu", silu_law)):
            if not tr.get(form):
                continue  # too few checkpoints to fit
            params = tr[form]["params"]
            trends.add_trace(go.Scatter(x=grid, y=law(grid, **params), mode="lines",
                                        name=f"{name} Eq. {'4' if form == 'relu' else '5'} (R² "
                                             f"{tr[form]['r2']:.3f})", line={"dash": "dot"}))
    trends.update_layout(title="Activation ratio against training data", xaxis_type="log",
                         xaxis_title="tokens seen / token_unit", yaxis_title="activation ratio", height=450)
    figs["trends"] = trends
    methods = res.details.get("methods", {}).get("all_layers", {})
    if methods:
        fig = go.Figure()
        ss = sorted(methods, key=float)
        for m in next(iter(methods.values())):
            fig.add_trace(go.Scatter(x=[float(s) for s in ss], y=[methods[s][m] for s in ss], mode="lines+markers",
                                     name=m))
        fig.update_layout(title="Loss increase at equal input sparsity (all layers)", xaxis_title="sparsity",
                          yaxis_title="Δ loss (nats/token)", height=420)
        figs["methods"] = fig
    per = res.details.get("methods", {}).get("per_layer", {})
    if per and all("winner" in v for v in per.values()):
        ss = sorted(per, key=float)
        n_layers = len(per[ss[0]]["winner"])
        labels = sorted({w for s in ss for w in per[s]["winner"]})
        z = [[labels.index(per[s]["winner"][li]) for s in ss] for li in range(n_layers)]
        text = [[per[s]["winner"][li] for s in ss] for li in range(n_layers)]
        fig = go.Figure(go.Heatmap(z=z, x=ss, y=[f"layer {li}" for li in range(n_layers)], text=text,
                                   texttemplate="%{text}", showscale=False))
        fig.update_layout(title="Best method per layer", xaxis_title="sparsity", height=300)
        figs["winners"] = fig
    sizes = res.details.get("sizes", {})
    if sizes:
        fig = go.Figure()
        for name in sizes:
            steps, arr = res.arrays.get(f"{name}.steps"), res.arrays.get(f"{name}.fat_0.01")
            if steps is not None and arr is not None:
                fig.add_trace(go.Scatter(x=np.maximum(steps, 1), y=arr.mean(1), mode="lines+markers",
                                         name=f"{name} ({sizes[name]['n_layers']} layers)"))
        fig.update_layout(title="FAT-0.01 kept fraction over training, by model size", xaxis_type="log",
                          xaxis_title="training step", yaxis_title="kept fraction (mean over layers)", height=400)
        figs["sizes"] = fig
    speed = res.details.get("speed_measured")
    if speed:
        fig = go.Figure()
        by_proj: dict[str, list] = {}
        for row in speed["layer"]:
            by_proj.setdefault(row["projection"], []).append(row)
        for proj, rows in by_proj.items():
            fig.add_trace(go.Scatter(x=[r["sparsity"] for r in rows], y=[r["speedup"] for r in rows],
                                     mode="lines+markers", name=f"{proj} (layer)"))
        if speed["decode"]:
            fig.add_trace(go.Scatter(x=[r["sparsity"] for r in speed["decode"]],
                                     y=[r["speedup"] for r in speed["decode"]], mode="lines+markers",
                                     name="decode, end to end", line={"width": 4}))
        fig.update_layout(title=f"Measured speed-up over dense on {speed['machine']} (batch 1, fp16)",
                          xaxis_title="input sparsity", yaxis_title="speed-up (x)", height=420)
        figs["speed"] = fig
    return figs
