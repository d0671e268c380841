"""Plotly figures of a hash-codes result, built only from its stored arrays and details."""

from __future__ import annotations

import numpy as np

_REGIME_TEXT = {-1: "", 0: "under", 1: "critical", 2: "sufficient"}


def _mean_std(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    with np.errstate(all="ignore"):
        return np.nanmean(a, axis=-1), np.nanstd(a, axis=-1)


def _line(go, x, a, name, dash=None):
    m, s = _mean_std(a)
    return go.Scatter(x=list(map(float, x)), y=m.tolist(), name=name, mode="lines+markers",
                      error_y=dict(type="data", array=s.tolist(), visible=True), line=dict(dash=dash))


def build_figures(arrays: dict, details: dict) -> dict:
    """Redundancy and categorisation vs width / epochs / samples, the phase charts and the LM layer profile."""
    import plotly.graph_objects as go

    figs: dict = {}
    A = arrays
    if "width.values" in A:
        w = A["width.values"]
        f = go.Figure([_line(go, w, A["width.rr_train"], "RR train"), _line(go, w, A["width.rr_test"], "RR test")])
        f.update_layout(title="Redundancy ratio vs width (digits, one hidden ReLU layer)",
                        xaxis=dict(title="width (units per layer)", type="log"), yaxis_title="(N − unique) / N")
        figs["redundancy_vs_width"] = f
        f = go.Figure([_line(go, w, A[f"width.{k}"], n) for k, n in
                       (("knn", "9-NN Hamming"), ("logreg", "OvO logistic regression"),
                        ("kmeans_test", "K-means (greedy)"), ("kmeans_hungarian_test", "K-means (Hungarian)"),
                        ("test_acc", "network accuracy"))])
        f.update_layout(title="Categorisation of test codes vs width", xaxis=dict(title="width", type="log"),
                        yaxis_title="test accuracy")
        figs["categorization_vs_width"] = f
    if "epochs.values" in A:
        e = A["epochs.values"] + 1
        w = A["width.values"]
        f = go.Figure([_line(go, e, A["epochs.rr_test"][i], f"width {int(wv)}") for i, wv in enumerate(w)])
        f.update_layout(title="Redundancy ratio (test) vs training time", yaxis_title="RR test",
                        xaxis=dict(title="epoch + 1", type="log"))
        figs["redundancy_vs_epochs"] = f
        if "epochs.knn" in A:
            f = go.Figure([_line(go, e, A["epochs.knn"][i], f"width {int(wv)}") for i, wv in enumerate(w)])
            f.update_layout(title="9-NN Hamming accuracy vs training time", yaxis_title="test accuracy",
                            xaxis=dict(title="epoch + 1", type="log"))
            figs["categorization_vs_epochs"] = f
    if "samples.values" in A:
        n, sw = A["samples.values"], A["samples.widths"]
        traces = [_line(go, n, A["samples.rr_test"][i], f"RR test, width {int(wv)}") for i, wv in enumerate(sw)]
        traces += [_line(go, n, A["samples.rr_train"][i], f"RR train, width {int(wv)}", "dot")
                   for i, wv in enumerate(sw)]
        f = go.Figure(traces)
        f.update_layout(title="Redundancy ratio vs training-set size (subsets tiled to the full set)",
                        xaxis=dict(title="training samples", type="log"), yaxis_title="RR")
        figs["redundancy_vs_samples"] = f
        keys = [k for k in ("knn", "logreg", "kmeans_test") if f"samples.{k}" in A]
        f = go.Figure([_line(go, n, A[f"samples.{k}"][i], f"{k}, width {int(wv)}", None if k == "knn" else "dot")
                       for k in keys for i, wv in enumerate(sw)])
        f.update_layout(title="Categorisation vs training-set size", xaxis=dict(title="training samples", type="log"),
                        yaxis_title="test accuracy")
        figs["categorization_vs_samples"] = f
    for key, ylab, yv, xlab, xv in (("epochs", "width", "width.values", "epoch", "epochs.values"),
                                    ("samples", "width", "samples.widths", "training samples", "samples.values")):
        if f"phase.{key}.rr_train" not in A:
            continue
        z = A[f"phase.{key}.rr_train"]
        reg = A[f"phase.{key}.regime"]
        text = [[_REGIME_TEXT[int(r)] for r in row] for row in reg]
        f = go.Figure(go.Heatmap(z=z.tolist(), x=[str(int(v)) for v in A[xv]], y=[str(int(v)) for v in A[yv]],
                                 text=text, texttemplate="%{text}", colorscale="Viridis", zmin=0, zmax=1,
                                 colorbar=dict(title="RR train"),
                                 hovertemplate=f"{ylab} %{{y}}<br>{xlab} %{{x}}<br>RR train %{{z:.3f}}"
                                               "<br>%{text}<extra></extra>"))
        f.update_layout(title=f"Activation hash phase chart: width × {xlab} (regime from RR on the training set)",
                        xaxis=dict(title=xlab, type="category"), yaxis=dict(title=ylab, type="category"))
        figs[f"phase_chart_{key}"] = f
    if "lm.rr_per_layer" in A:
        layers = list(range(len(A["lm.rr_per_layer"])))
        tr = [go.Bar(x=layers, y=A["lm.rr_per_layer"].tolist(), name="token RR (per layer)")]
        if "lm.feature_knn_per_layer" in A:
            tr.append(go.Bar(x=layers, y=A["lm.feature_knn_per_layer"].tolist(), name="probe feature 9-NN"))
        f = go.Figure(tr)
        lm = details.get("lm", {})
        f.update_layout(title=f"LM MLP codes by layer ({lm.get('model', '')})", xaxis_title="layer",
                        yaxis_title="redundancy ratio / 9-NN accuracy (fractions)", barmode="group")
        figs["lm_layers"] = f
    return figs
