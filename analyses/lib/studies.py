"""`run(Config) -> LIBResult`: the paper's studies in order, then its claims against the numbers.

1. Build the LIB graph (§2: the Jacobian basis, Eq. 3-6, and the squared edges, Eq. 7) and the PCA graph.
2. Node ablation: how many directions per layer keep 99 % of the accuracy (§4.1).
3. Edge ablation: how many edges keep the accuracy within 0.001 (§4.2), LIB against PCA.
4. Fourier labels of the leading mod-add directions (§4.3).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from analyses.lib.ablation import edges_required, node_ablation_curve, threshold_count
from analyses.lib.basis import LIBLayer, lib_build
from analyses.lib.config import Config
from analyses.lib.cut import LIBModel
from analyses.lib.fourier import fourier_fractions, key_frequencies, label_directions
from analyses.lib.result import LIBResult
from analyses.lib.tl_sections import transformer_lib_model
from interp import progress
from interp.analysis import Finding, Provenance
from interp.errors import ConfigError

DEFAULT_NODES = ["ln1.0", "ln2.0", "unembed", "output"]


def _accuracy(labels: Tensor):
    def metric(logits: Tensor) -> float:
        pred = logits.argmax(-1)
        return float((pred == labels).double().mean())
    return metric


@dataclass
class Setup:
    """What the studies run on: the LIB cut of the model, the inputs the graph is built from, the node- and
    edge-ablation evaluation sets (inputs, labels), the mod-add input grid and modulus (None for a language model),
    and the provenance of the model and data."""

    lm: LIBModel
    graph_inputs: Tensor
    eval: tuple[Tensor, Tensor]
    edge_eval: tuple[Tensor, Tensor]
    grid: Tensor | None
    p: int | None
    provenance: dict[str, Any]


@dataclass
class NodeAblation:
    """§4.1: accuracy with the first k directions of each node layer kept (LIB and PCA), and the smallest k that
    keeps `node_fraction` of the unablated accuracy `base`. layers[name][basis] = {k, score, n_required}."""

    base: float
    layers: dict[str, dict[str, dict[str, Any]]]


@dataclass
class EdgeAblation:
    """§4.2: per basis and layer, the edges needed to keep the accuracy within `edge_tolerance` of `base` (found
    by bisection over the edges sorted by size), and their total. graphs[basis][layer] = {n_required, n_edges,
    trace}; graphs[basis]["total"] = the sum."""

    base: float
    graphs: dict[str, dict[str, Any]]


def _load(cfg: Config) -> Setup:
    """Model, LIB cut, graph inputs and evaluation sets for mod-add or a language model."""
    if cfg.model == "modadd":
        from analyses.lib.modadd import ModAddWeights, P, load_modadd, modadd_data, modadd_meta

        try:
            model = load_modadd(cfg.seed, torch.float64)
        except ImportError:                                # bare torch (no transformer-lens): same weights
            model = ModAddWeights(cfg.seed)
        lm = transformer_lib_model(model, cfg.node_layers, cfg.last_pos_only)
        x_tr, y_tr = modadd_data(cfg.seed, "train")
        x_te, y_te = modadd_data(cfg.seed, "test")
        g = torch.Generator().manual_seed(cfg.seed)
        perm = torch.randperm(x_te.shape[0], generator=g)
        ne = cfg.n_eval_samples or x_te.shape[0]
        if cfg.edge_eval_set == "train":               # rib's edge bisect configs: return_set train, whole set
            edge_eval = (x_tr[: cfg.n_edge_eval_samples or None], y_tr[: cfg.n_edge_eval_samples or None])
        else:
            sub = perm[: cfg.n_edge_eval_samples or None]
            edge_eval = (x_te[sub], y_te[sub])
        return Setup(lm, x_tr[: cfg.n_samples or None], (x_te[perm[:ne]], y_te[perm[:ne]]), edge_eval,
                     modadd_data(cfg.seed, "all")[0], P,
                     {"model": f"modadd seed {cfg.seed} (data/lib)", "training": modadd_meta(cfg.seed)})
    from interp import models, sources

    step = None if cfg.step < 0 else cfg.step
    loaded = models.load(cfg.model, step=step, dtype="float64")
    model = _as_hooked(cfg.model, loaded)
    nodes = cfg.node_layers
    if nodes == DEFAULT_NODES:
        nodes = [f"blocks.{i}.hook_resid_pre" for i in range(model.cfg.n_layers)] + ["unembed", "output"]
    lm = transformer_lib_model(model, nodes, last_pos_only=False)
    tok = models.load_tokenizer(cfg.model)
    blocks = sources.token_blocks(cfg.data, tok, ctx=cfg.lm_ctx + 1, n_tokens=2 * cfg.lm_blocks * (cfg.lm_ctx + 1))
    x, y = blocks[:, :-1], blocks[:, 1:]
    n = cfg.n_samples or x.shape[0] // 2
    x_tr, y_tr, x_te, y_te = x[:n], y[:n], x[n:], y[n:]
    ne = max(1, cfg.n_edge_eval_samples // cfg.lm_ctx) if cfg.n_edge_eval_samples else None
    edge_eval = (x_tr[:ne], y_tr[:ne]) if cfg.edge_eval_set == "train" else (x_te[:ne], y_te[:ne])
    prov = {"model": cfg.model, "step": models.resolved_step(cfg.model, step, loaded),  # -1: the final one
            "data": sources.describe_source(cfg.data)}
    if getattr(model, "converted_from", None):
        prov["converted_from"] = model.converted_from
        prov["weights"] = (f"converted from {model.converted_from} (run natively by interp) to a transformer-lens "
                           "HookedTransformer with unprocessed weights, for LIB's folded-bias sections")
    return Setup(lm, x_tr, (x_te, y_te), edge_eval, None, None, prov)


def _as_hooked(name: str, model: torch.nn.Module) -> torch.nn.Module:
    """The HookedTransformer LIB cuts into sections: a natively run Hugging Face model (Llama, Mistral, Qwen2,
    Qwen3, Phi-3) converted with unprocessed weights (`interp.models.as_transformer_lens`; it then carries
    `converted_from`), a transformer-lens model as is; anything else is refused in one line."""
    from interp import models
    from interp.errors import InterpError
    from interp.models.native import NativeModel
    from interp.models.tl_convert import convertible_hint

    if isinstance(model, NativeModel):
        try:
            model = models.as_transformer_lens(model, dtype=torch.float64)
        except InterpError as e:
            raise ConfigError(f"LIB's language-model sections are written against transformer-lens blocks, and "
                              f"{e.message}", hint=e.hint) from None
    if not models.is_transformer(model):
        raise ConfigError(f"LIB on a language model needs a transformer-lens model, and {name} loads as "
                          f"{type(model).__name__}", hint=convertible_hint() + ", or model=modadd")
    if model.cfg.dtype != torch.float64:
        model = model.to(torch.float64, print_details=False)
        model.cfg.dtype = torch.float64
    return model.eval()


def node_ablation(lm: LIBModel, layers: list[LIBLayer], x: Tensor, y: Tensor, cfg: Config) -> NodeAblation:
    """§4.1: ablate all but the first k directions of one node layer at a time, in the LIB and the PCA basis."""
    metric = _accuracy(y)
    with torch.no_grad():
        acts = lm.all_acts(x)
    base = metric(acts[-1])
    out = NodeAblation(base, {})
    for l, L in enumerate(layers[:-1]):
        row = {}
        for tag, (B, Bp) in {"lib": (L.C, L.C_pinv), "pca": (L.W, L.W_pinv)}.items():
            ks, sc = node_ablation_curve(lm, l, acts[l], B, Bp, metric)
            row[tag] = {"k": ks, "score": sc, "n_required": threshold_count(ks, sc, cfg.node_fraction * base)}
        out.layers[L.name] = row
    return out


def edge_ablation(lm: LIBModel, graphs: dict[str, tuple[list[LIBLayer], list[Tensor]]], x: Tensor, y: Tensor,
                  cfg: Config) -> EdgeAblation:
    """§4.2: per graph (LIB, PCA) and layer, how many of the largest edges (Eq. 7) keep the accuracy."""
    metric = _accuracy(y)
    with torch.no_grad():
        acts = lm.all_acts(x)
    base = metric(acts[-1])
    out = EdgeAblation(base, {})
    for tag, (layers, edges) in graphs.items():
        res = {}
        for l, E in enumerate(edges):
            n, trace = edges_required(lm, l, acts[l], layers[l], layers[l + 1], E, metric, base,
                                      cfg.edge_tolerance, keep_const=cfg.center)
            res[layers[l].name] = {"n_required": n, "n_edges": int(E.numel()), "trace": trace}
        res["total"] = sum(r["n_required"] for r in res.values())
        out.graphs[tag] = res
    return out


def fourier_study(lm: LIBModel, layers: list[LIBLayer], grid: Tensor, p: int, n_dirs: int) -> dict:
    """§4.3: per node layer, the Fourier power fractions of the leading `n_dirs` LIB directions over the p × p
    input grid (`fourier_fractions`)."""
    with torch.no_grad():
        acts = lm.all_acts(grid)
    out = {}
    for l, L in enumerate(layers[:-1]):
        h = acts[l] @ L.C[:, :n_dirs]
        if h.ndim == 3:
            h = h.sum(1)                       # rib sums the embedding-layer directions over positions
        out[L.name] = fourier_fractions(h.reshape(p, p, -1))
    return out


def findings(summary: dict) -> list[Finding]:
    """The paper's checkable claims (Bushnaq et al. 2024, mod-add) against this run's numbers."""
    modadd = "ln1_leading10_single_freq_ge_0.9" in summary
    why = "the Fourier labels exist only for the modular-addition model"
    return [
        Finding.compare("LIB needs fewer interaction edges than PCA to keep the accuracy within 0.001 (LIB total "
                        "minus PCA total)", summary.get("lib_minus_pca_edges"), "<=", 0.0, key="lib_minus_pca_edges",
                        paper="794.8 vs 865.2 edges, mean of 5 seeds (rib mod-add)",
                        why_not_applicable="edge ablation or the PCA comparison was not run"),
        Finding.compare("The leading non-constant ln1.0 LIB directions each sit on one Fourier frequency (≥ 90 % "
                        "of their power), counted over the first ten", summary.get("ln1_leading10_single_freq_ge_0.9")
                        if modadd else None, ">=", 6, key="ln1_leading10_single_freq_ge_0.9",
                        paper="6-12 such directions, 5-6 distinct key frequencies", why_not_applicable=why),
        Finding.compare("The mod-add model is trained to near-perfect test accuracy (the premise of the paper's "
                        "ablations)", summary.get("test_accuracy"), ">", 0.998, key="test_accuracy",
                        paper="> 0.998", why_not_applicable="node ablation was not run"),
    ]


def run(config: Config | None = None) -> LIBResult:
    """Build the LIB graph (and PCA), ablate nodes and edges, label directions; return the result."""
    cfg = (config or Config()).validate()
    torch.manual_seed(cfg.seed)
    progress.stage("lib", f"loading {cfg.model} and its graph inputs")
    data = _load(cfg)
    lm, xg = data.lm, data.graph_inputs
    kw = dict(center=cfg.center, trunc=cfg.truncation, integration=cfg.integration, n_intervals=cfg.n_intervals,
              edge_formula=cfg.edge_formula, method=cfg.jacobian_method,
              rotate_final_node_layer=cfg.rotate_final_node_layer)
    t0 = time.time()
    progress.stage("lib", f"building the {cfg.basis} basis and edges on {int(xg.shape[0])} samples")
    with torch.no_grad():
        acts = lm.all_acts(xg)
    layers, edges = lib_build(lm, xg, basis=cfg.basis, acts=acts, **kw)
    t_lib = time.time() - t0
    graphs = {"lib": (layers, edges)}
    t_pca = 0.0
    if cfg.compare_pca and cfg.basis != "svd":
        t0 = time.time()
        progress.stage("lib", "building the PCA graph")
        graphs["pca"] = lib_build(lm, xg, basis="svd", acts=acts, **kw)
        t_pca = time.time() - t0
    summary: dict[str, Any] = {"model": data.provenance["model"], "n_graph_samples": int(xg.shape[0]),
                               "lib_build_seconds": round(t_lib, 2)}
    if "converted_from" in data.provenance:                # a natively run HF model, converted to transformer-lens
        summary["converted_from"] = data.provenance["converted_from"]
    details: dict[str, Any] = {"node_layers": lm.node_layers, "pca_build_seconds": round(t_pca, 2)}
    arrays: dict[str, np.ndarray] = {}
    for tag, (ls, es) in graphs.items():
        details[f"{tag}_dims"] = {L.name: list(L.C.shape) for L in ls}
        for l, E in enumerate(es):
            arrays[f"edges_{tag}_{l}"] = E.numpy()
    for l, L in enumerate(layers):
        if L.Lam is not None:
            arrays[f"lambda_{l}"] = L.Lam.numpy()
        if L.D is not None:
            arrays[f"pca_eig_{l}"] = L.D.numpy()
    if cfg.node_ablation:
        progress.stage("lib", "node ablation")
        nodes = node_ablation(lm, layers, *data.eval, cfg)
        summary["test_accuracy"] = nodes.base
        details["node_ablation"] = asdict(nodes)
        for name, row in nodes.layers.items():
            summary[f"lib_nodes_{name}"] = row["lib"]["n_required"]
            summary[f"pca_nodes_{name}"] = row["pca"]["n_required"]
    if cfg.edge_ablation and edges:
        progress.stage("lib", "edge ablation (bisection per layer)")
        ed = edge_ablation(lm, graphs, *data.edge_eval, cfg)
        details["edge_ablation"] = {"base": ed.base, **ed.graphs}
        for tag in graphs:
            summary[f"{tag}_edges_required_total"] = ed.graphs[tag]["total"]
        if "pca" in graphs:
            summary["lib_minus_pca_edges"] = ed.graphs["lib"]["total"] - ed.graphs["pca"]["total"]
    if data.grid is not None:
        fr = fourier_study(lm, layers, data.grid, data.p, cfg.n_fourier_dirs)
        labels = {}
        for name, f in fr.items():
            for k, v in f.items():
                arrays[f"fourier_{name}_{k}"] = np.asarray(v)
            labels[name] = {"single": label_directions(f, "single"), "sum": label_directions(f, "sum")}
        details["fourier"] = labels
        first, last = lm.node_layers[0], lm.node_layers[-2]
        lead = labels[first]["single"][1:11]                   # leading non-constant directions
        summary["ln1_leading10_single_freq_ge_0.9"] = sum(r["fraction"] >= 0.9 for r in lead)
        summary["ln1_key_frequencies"] = ",".join(map(str, key_frequencies(lead, 0.9)))
        xy = [r["total_sum"] for r in labels[last]["sum"][1:11]]
        summary["unembed_leading10_x_plus_y_mean"] = float(np.mean(xy))
        summary["unembed_leading10_x_plus_y_ge_0.5"] = int(sum(v >= 0.5 for v in xy))
    prov = Provenance.collect(**data.provenance)
    return LIBResult(summary=summary, details=details, arrays=arrays, config=cfg.to_dict(),
                     provenance=prov.to_dict(), findings=findings(summary))
