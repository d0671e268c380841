"""`run(Config)`: the paper's studies in order, returned as a `MassiveResult`.

1. `sweep_checkpoints`: per-layer top-1/median ratios of the decoder-layer outputs at every checkpoint (Eq. 8),
   with detection (Sun et al.'s criteria or the relative rule) and the held-out loss.
2. `fit_curves`: the five-parameter curve (Eq. 14, reparametrised, multi-start) per layer, and its alternatives.
3. `intervene`: zero and mean ablation of the massive dimensions at the final checkpoint (Sun et al. §3).
4. `predict_parameters`: architecture → curve-parameter regressions (Gallego-Feliciano et al. §5).
`findings` turns the numbers into the papers' claims, each held or not.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from interp import progress
from interp.analysis import Finding, Provenance
from interp.config_checks import check_context
from interp.errors import ConfigError

from .config import Config
from .curve import fit_ma_curve, fit_ma_curve_paper
from .method import DetectionCriteria, aggregate_ratio, detect_massive, layer_outputs, massive_stats
from .result import MassiveResult
from .sweep import checkpoint_sweep


def _tokens(cfg: Config):
    """Held-out token blocks [n_inputs, ctx] and the tokenizer of the suite."""
    from interp import models
    from interp.sources import token_blocks

    tok = models.load_tokenizer(cfg.model)
    return token_blocks(cfg.data, tok, ctx=cfg.ctx, n_tokens=cfg.n_inputs * cfg.ctx), tok


def _criteria(cfg: Config) -> DetectionCriteria:
    return DetectionCriteria(mode=cfg.detect_mode, abs_thresh=cfg.abs_thresh, ratio_thresh=cfg.ratio_thresh,
                             rel_ratio=cfg.rel_ratio, mad_thresh=cfg.mad_thresh, persistence=cfg.persistence)


def architecture(model: torch.nn.Module) -> dict:
    """n_layers, d_model, n_heads, d_ff of a transformer-lens model or a natively run Hugging Face one."""
    cfg = model.cfg
    hf = getattr(getattr(model, "config", None), "get_text_config", lambda: getattr(model, "config", None))()
    return {"n_layers": int(cfg.n_layers), "d_model": int(cfg.d_model),
            "n_heads": int(getattr(cfg, "n_heads", 0) or getattr(hf, "num_attention_heads", 0)),
            "d_ff": int(getattr(cfg, "d_mlp", 0) or getattr(hf, "intermediate_size", 0))}


def checkpoint_metric(tokens: torch.Tensor, cfg: Config, tokenizer=None):
    """The per-checkpoint metric: per-layer top-k/median arrays, the held-out loss and the detected rows."""
    def metric(model: torch.nn.Module, step: int) -> dict:
        check_context(model, tokens.shape[1])
        hs = layer_outputs(model, tokens, hook=cfg.hook)  # [L, B, S, d] float64
        st = massive_stats(hs, k=cfg.top_k)
        det = detect_massive(hs, tokens, tokenizer, _criteria(cfg))
        from .intervene import _loss

        loss = _loss(model, tokens, [])
        arch = architecture(model)
        return {"step": step, "loss": loss, "arch": arch, **{k: v.tolist() for k, v in st.items()},
                "detected": det["rows"][:200], "n_detected": len(det["rows"]), "dims": det["dims"]}
    return metric


def ma_trajectory(model: str, tokens: torch.Tensor, steps: list[int] | None = None,
                  agg: str = "ratio_of_means", hook: str = "resid_post", cache_dir: str | None = None,
                  loader=None) -> tuple[np.ndarray, np.ndarray]:
    """(steps [T], per-layer top-1/median ratio [T, L]) of a suite's checkpoints on tokens [B, S] (Eq. 8)."""
    def metric(m: torch.nn.Module, step: int) -> dict:
        st = massive_stats(layer_outputs(m, tokens, hook=hook), k=1)
        return {"top": st["top"][..., 0].tolist(), "median": st["median"].tolist()}

    per = checkpoint_sweep(model, metric, steps, cache_dir=cache_dir, key=f"trajectory-{hook}", loader=loader)
    s = sorted(per)
    out = aggregate_ratio(np.array([per[k]["top"] for k in s]), np.array([per[k]["median"] for k in s]))
    if agg not in ("ratio_of_means", "mean_of_ratios"):
        raise ConfigError(f"unknown aggregate {agg!r}", hint="use ratio_of_means or mean_of_ratios")
    return np.array(s, dtype=np.float64), out[agg]


def _sweep_key(cfg: Config, tokens: torch.Tensor) -> str:
    """Identifies what a cached checkpoint result depends on (tokens and metric options)."""
    from interp.sources import blocks_hash

    opts = {k: getattr(cfg, k) for k in ("model", "hook", "top_k", "detect_mode", "abs_thresh", "ratio_thresh",
                                          "rel_ratio", "mad_thresh", "persistence")}
    return hashlib.sha256((json.dumps(opts, sort_keys=True) + blocks_hash(tokens)).encode()).hexdigest()[:16]


def fit_layers(steps: np.ndarray, series: np.ndarray, alternatives: bool = True) -> list[dict]:
    """Fit Eq. 14 to each layer's series [T, L]; with alternatives, the paper's single start and step responses."""
    from .alternatives import fit_step_responses

    fits = []
    for li in range(series.shape[1]):
        f = fit_ma_curve(steps, series[:, li])
        row = {"layer": li, **f.to_dict()}
        if alternatives:
            p = fit_ma_curve_paper(steps, series[:, li], max_nfev=2000)
            row["paper_single_start"] = {"r2": p.r2, "aic": p.aic, "params": p.params}
            row["step_responses"] = fit_step_responses(steps, series[:, li])
        fits.append(row)
    return fits


def _intervene(cfg: Config, tokens: torch.Tensor, final: dict) -> list[dict]:
    """Zero and mean interventions at the final checkpoint on the detected dims (or, if none, the top-1 dims)."""
    from interp import models

    from .intervene import intervene_massive

    model = models.load(cfg.model, step=final["step"], device=cfg.device)
    rows = final["detected"]
    if rows:
        first = min(r["layer"] for r in rows)
        dims, why = sorted({r["dim"] for r in rows if r["layer"] == first}), "detected"
    else:  # no massive activations: intervene on the top-1 dim of the layer with the largest ratio as a baseline
        ratio = np.asarray(final["ratio"]).mean(1)
        first = int(ratio.argmax())
        dims, why = sorted({int(d) for d in np.asarray(final["top_dim"])[first, :, 0]}), "top-1 (none detected)"
    out = []
    for mode in ("zero", "mean"):
        r = intervene_massive(model, tokens, first, dims, mode=mode, positions=cfg.intervene_positions,
                              rel_ratio=cfg.rel_ratio if rows else 0.0, control_seed=cfg.seed)
        out.append({**r, "dims_source": why, "step": final["step"]})
    return out


def _predictor(cfg: Config, fit_rows: list[dict]) -> dict:
    from .predictor import fit_param_predictors, load_param_table

    rows = list(fit_rows)
    if cfg.predictor_table:
        rows += load_param_table(cfg.predictor_table)
    try:
        return fit_param_predictors(rows, seed=cfg.seed)
    except ConfigError as e:
        return {"skipped": str(e), "n_rows": len(rows)}


@dataclass
class Sweep:
    """Study 1: the per-checkpoint statistics. Arrays are [T checkpoints, L layers, B inputs, (k)]."""

    steps: list[int]
    per_step: dict[int, dict]
    top: np.ndarray
    median: np.ndarray
    aggregates: dict[str, np.ndarray]  # ratio_of_means, mean_of_ratios, ratio_cv: each [T, L]
    series: np.ndarray  # the aggregate the curves are fitted to, [T, L]

    @property
    def final(self) -> dict:
        return self.per_step[self.steps[-1]]


@dataclass
class CurveFits:
    """Study 2: Eq. 14 fitted per layer, the fitted curves on a log grid, and why no fit was made (if none)."""

    fits: list[dict]
    grid: np.ndarray
    curves: np.ndarray
    status: str


@dataclass
class Predictor:
    """Study 4: the parameter table (one row per fitted layer and suite) and the regressions' test scores."""

    param_table: list[dict]
    scores: dict = field(default_factory=dict)


def sweep_checkpoints(cfg: Config, tokens: torch.Tensor, tok) -> Sweep:
    """Study 1: run the metric on every checkpoint (resumable through cfg.cache_dir)."""
    from interp import models

    steps = list(cfg.checkpoints) or models.checkpoints(cfg.model)
    progress.stage("massive", f"sweeping {len(steps)} checkpoints of {cfg.model} on {tokens.shape[0]} sequences")
    per = checkpoint_sweep(cfg.model, checkpoint_metric(tokens, cfg, tok), steps, cache_dir=cfg.cache_dir or None,
                           key=_sweep_key(cfg, tokens), device=cfg.device)
    steps = sorted(per)
    top = np.array([per[s]["top"] for s in steps])  # [T, L, B, k]
    med = np.array([per[s]["median"] for s in steps])  # [T, L, B]
    agg = aggregate_ratio(top[..., 0], med, axis=-1)  # each [T, L]
    return Sweep(steps=steps, per_step=per, top=top, median=med, aggregates=agg, series=agg[cfg.aggregate])


def fit_curves(cfg: Config, sweep: Sweep) -> CurveFits:
    """Study 2: Eq. 14 per layer where there are enough checkpoints (five parameters need six points)."""
    from .curve import ma_curve_reparam

    t = np.array(sweep.steps, dtype=np.float64)
    grid = np.unique(np.concatenate([[0.0], np.geomspace(1, max(t.max(), 1), 200)]))
    if not cfg.fit:
        return CurveFits([], grid, np.zeros((0, grid.size)), "not asked (fit=False)")
    if len(sweep.steps) < 6:  # said, not silent
        return CurveFits([], grid, np.zeros((0, grid.size)),
                         f"skipped: the curve fit needs at least 6 checkpoints, this sweep has {len(sweep.steps)}")
    progress.stage("massive", f"fitting Eq. 14 to {sweep.series.shape[1]} layers")
    fits = fit_layers(t, sweep.series, cfg.compare_alternatives)
    curves = np.array([ma_curve_reparam(grid, **f["reparam"]) for f in fits])
    return CurveFits(fits, grid, curves, "fitted")


def predict_parameters(cfg: Config, sweep: Sweep, curves: CurveFits) -> Predictor:
    """Study 4: the fitted parameters of this suite (and of `predictor_suites`) against the architecture."""
    from interp import models

    arch = sweep.final["arch"]
    rows = [{"suite": cfg.model, "layer": f["layer"] + 1, **arch, **f["params"]} for f in curves.fits]
    extras = list(cfg.predictor_suites)
    if extras == ["auto"]:  # every other embedded suite
        extras = [n for n in models.embedded_names() if n != cfg.model]
    for extra in extras:
        progress.stage("massive", f"predictor: sweeping {extra}")
        sub = run(Config(**{**asdict(cfg), "model": extra, "checkpoints": [], "predictor_suites": [],
                            "intervene": False, "compare_alternatives": False, "cache_dir": ""}))
        rows += sub.details["param_table"]
    return Predictor(rows, _predictor(cfg, rows))


def findings(summary: dict) -> list[Finding]:
    """The papers' checkable claims against this run's numbers."""
    out = [
        Finding.compare("Massive activations emerge during training: the largest top-1/median ratio at the final "
                        "checkpoint exceeds the one at initialisation", summary["growth_final_over_step0_max"],
                        ">", 1.0, key="growth_final_over_step0_max",
                        paper="the ratio grows over training in every Pythia model (Pythia-14M ends near 83)"),
        Finding.compare("Some activation meets Sun et al.'s criteria at the final checkpoint (|a| > 100 and "
                        "|a| ≥ 1000 × the layer median)", float(summary["sun_criteria_met_final"]), ">=", 1.0,
                        key="sun_criteria_met_final",
                        paper="met in LLMs of 7B parameters and more; small Pythia models stay below",
                        detail=f"The largest final ratio here is {summary['ratio_final_max']:.3g}."),
    ]
    out.append(Finding.compare(
        "The five-parameter curve (Eq. 14) fits every layer's trajectory", summary["min_fit_r2"], ">=", 0.93,
        key="min_fit_r2", paper="mean layer-wise R² 0.984, no layer below about 0.93 (Table 1)",
        why_not_applicable=summary.get("fit_status", "")))
    out.append(Finding.compare(
        "Zeroing the massive dimensions raises the loss more than setting them to their mean",
        summary.get("delta_loss_zero_minus_mean"), ">", 0.0, key="delta_loss_zero_minus_mean",
        paper="zeroing destroys the model (perplexity to thousands), mean ablation barely changes it (Sun et al. "
              "Table 3)", why_not_applicable="the intervention study was not run (intervene=False)"))
    return out


def run(config: Config | None = None) -> MassiveResult:
    """Massive activations across the training checkpoints of `config.model` (default: the embedded suite)."""
    from interp.sources import describe_source

    cfg = (config or Config()).validate()
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    tokens, tok = _tokens(cfg)
    sweep = sweep_checkpoints(cfg, tokens, tok)
    curves = fit_curves(cfg, sweep)
    final, series, fits = sweep.final, sweep.series, curves.fits
    if cfg.intervene:
        progress.stage("massive", "zero and mean ablation at the final checkpoint")
    interventions = _intervene(cfg, tokens, final) if cfg.intervene else []
    predictor = predict_parameters(cfg, sweep, curves)
    arch = final["arch"]
    growth = series[-1] / series[0]
    top_rows = [{"layer": li, "input": b, "position": int(final["top_pos"][li][b][0]),
                 "token": tok.decode([int(tokens[b, final["top_pos"][li][b][0]])]),
                 "dim": int(final["top_dim"][li][b][0]), "value": float(final["top_value"][li][b][0]),
                 "ratio": float(final["ratio"][li][b])}
                for li in range(len(final["top"])) for b in range(len(final["top"][li]))]
    summary = {
        "model": cfg.model, "n_checkpoints": len(sweep.steps), "n_layers": int(arch["n_layers"]),
        "aggregate": cfg.aggregate,
        "ratio_step0_max": float(series[0].max()), "ratio_final_max": float(series[-1].max()),
        "ratio_max_over_training": float(series.max()), "growth_final_over_step0_max": float(growth.max()),
        "growth_max_over_step0": float((series.max(0) / series[0]).max()),
        "n_detected_final": int(final["n_detected"]), "massive_dims_final": final["dims"],
        "sun_criteria_met_final": any(r.get("sun") for r in final["detected"]),
        "mean_fit_r2": float(np.mean([f["r2"] for f in fits])) if fits else float("nan"),
        "min_fit_r2": float(np.min([f["r2"] for f in fits])) if fits else float("nan"),
        "n_early_peak": sum(f["regime"] == "early peak" for f in fits),
        "mean_fit_r2_paper_single_start": float(np.mean([f["paper_single_start"]["r2"] for f in fits]))
        if fits and "paper_single_start" in fits[0] else float("nan"),
        "n_layers_aic_prefers_ma_curve": sum(f["aic"] < min(f["step_responses"]["step1"]["aic"],
                                                            f["step_responses"]["step2"]["aic"])
                                             for f in fits if "step_responses" in f),
        "loss_final": float(final["loss"]),
    }
    for iv in interventions:
        summary[f"delta_loss_{iv['mode']}"] = iv["delta_loss"]
        summary[f"delta_loss_{iv['mode']}_control"] = iv.get("delta_loss_control")
    if interventions:
        summary["delta_loss_zero_minus_mean"] = summary["delta_loss_zero"] - summary["delta_loss_mean"]
    details = {
        "steps": sweep.steps, "arch": arch, "fits": fits, "param_table": predictor.param_table,
        "interventions": interventions, "predictor": predictor.scores, "top_activations_final": top_rows,
        "detected_final": final["detected"],
        "detected_by_step": {str(s): sweep.per_step[s]["n_detected"] for s in sweep.steps},
        "loss_by_step": {str(s): sweep.per_step[s]["loss"] for s in sweep.steps},
        "ratio_cv_final": sweep.aggregates["ratio_cv"][-1].tolist(), "seconds": round(time.time() - t0, 1),
        "fit_status": curves.status,
    }
    agg = sweep.aggregates
    arrays = {"steps": np.array(sweep.steps, dtype=np.float64), "ratio_of_means": agg["ratio_of_means"],
              "mean_of_ratios": agg["mean_of_ratios"], "top": sweep.top, "median": sweep.median,
              "fit_grid": curves.grid, "fit_curves": curves.curves}
    prov = Provenance.collect(model=cfg.model, step=sweep.steps, hooks=[f"blocks.*.hook_{cfg.hook}"],
                              data=describe_source(cfg.data), n_tokens=int(tokens.numel()))
    return MassiveResult(summary=summary, details=details, arrays=arrays, config=cfg.to_dict(),
                         provenance=prov.to_dict(), findings=findings({**summary, "fit_status": curves.status}))
