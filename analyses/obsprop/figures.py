"""Figures of an obsprop result, built only from its stored numbers and arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from interp.results import fmt


def _heat(z: np.ndarray, title: str, x: list[str], y: list[str], zmid: float | None = None, quantity: str = ""):
    """A layer × head heatmap whose colour bar and hover text name the quantity."""
    import plotly.graph_objects as go

    kw: dict[str, Any] = {"colorscale": "RdBu", "zmid": zmid} if zmid is not None else {"colorscale": "Viridis"}
    fig = go.Figure(go.Heatmap(z=np.asarray(z), x=x, y=y, colorbar={"title": quantity},
                               hovertemplate=f"layer %{{y}}, head %{{x}}<br>{quantity} %{{z:.4g}}<extra></extra>",
                               **kw))
    fig.update_layout(title=title, xaxis_title="head", yaxis_title="layer")
    return fig


def build_figures(summary: dict, details: dict, arrays: dict) -> dict[str, Any]:
    """Feature-vector norms per head, path patching per head, subj/obj cosines per head, coupling vs fitted
    slope, score scatter, cosine matrices, debias bars."""
    import plotly.graph_objects as go

    figs: dict[str, Any] = {}
    names = details.get("obs_names", [])
    if "head_norms" in arrays:
        norms = np.asarray(arrays["head_norms"])
        L, H = norms.shape[1:]
        hx, ly = [str(h) for h in range(H)], [str(lay) for lay in range(L)]
        for i, name in enumerate(names):
            figs[f"norms_{name}"] = _heat(norms[i], f"feature-vector norm per head ({name}, LN approx)", hx, ly,
                                          quantity="‖y‖")
        if "patch_effect" in arrays:
            for i, name in enumerate(("subj", "obj", "occu")):
                figs[f"patch_{name}"] = _heat(arrays["patch_effect"][i], f"path-patching effect per head ({name})",
                                              hx, ly, zmid=0.0, quantity="Δ observable")
        if "cos_subj_obj_heads" in arrays:
            figs["cos_subj_obj_heads"] = _heat(arrays["cos_subj_obj_heads"],
                                               f"cos(subj, obj) head feature vectors; raw observables "
                                               f"{fmt(summary.get('cos_raw_subj_obj'), '.3f')}", hx, ly, 0.0,
                                               quantity="cosine")
    if "coupling_pred" in arrays:
        c, s = np.asarray(arrays["coupling_pred"]), np.asarray(arrays["slope_fit"])
        labels = details.get("coupling_labels", [str(i) for i in range(len(c))])
        lo, hi = float(min(c.min(), s.min(), 0)), float(max(c.max(), s.max(), 1))
        fig = go.Figure([go.Scatter(x=c, y=s, mode="markers+text", text=labels, textposition="top center",
                                    name="coupling"),
                         go.Scatter(x=arrays["coupling_cov"], y=s, mode="markers", name="Σ-aware coupling"),
                         go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line={"dash": "dash"})])
        fig.update_layout(title="predicted coupling vs fitted slope of feature scores",
                          xaxis_title="coupling coefficient", yaxis_title="best-fit slope")
        figs["coupling_vs_slope"] = fig
    if "scatter_s1" in arrays:
        # SVG, not Scattergl: a few thousand points draw fast, and without WebGL a Scattergl plot is blank
        fig = go.Figure(go.Scatter(x=arrays["scatter_s1"], y=arrays["scatter_s2"], mode="markers",
                                   marker={"size": 3, "opacity": 0.4}))
        fig.update_layout(title=f"feature scores on held-out tokens at {summary.get('top_subj_head', '')}",
                          xaxis_title="subject-pronoun score", yaxis_title="object-pronoun score")
        figs["score_scatter"] = fig
    for key, title in (("cos_raw", "cosine of raw observables (W_U n)"),
                       ("cos_top_head", f"cosine of feature vectors at {summary.get('top_subj_head', '')}")):
        if key in arrays:
            fig = go.Figure(go.Heatmap(z=arrays[key], x=names, y=names, colorscale="RdBu", zmid=0, zmin=-1, zmax=1,
                                       colorbar={"title": "cosine"},
                                       hovertemplate="%{y} · %{x}<br>cosine %{z:.3f}<extra></extra>"))
            fig.update_layout(title=title, xaxis_title="observable", yaxis_title="observable")
            figs[key] = fig
    deb = details.get("debias")
    if deb:
        cats = ["before", "projected (bias feature)", "projected (random)", "projected at occupation tokens"]
        nan = float("nan")
        fig = go.Figure([go.Bar(name="occupation bias gap", x=cats, y=[
                            deb["bias_gap_before"], deb["bias_gap_after"], deb["bias_gap_random_dir"],
                            deb.get("bias_gap_after_occupation_tokens", nan)]),
                         go.Bar(name="name pronoun gap", x=cats, y=[
                            deb["name_gap_before"], deb["name_gap_after"], deb["name_gap_random_dir"],
                            deb.get("name_gap_after_occupation_tokens", nan)])])
        fig.update_layout(title=f"debiasing: project out the bias feature at {deb['hook']}", barmode="group",
                          yaxis_title="she − he logit gap")
        figs["debias"] = fig
    return figs
