"""`run(Config)`: sweep a suite's checkpoints, per-layer massive-activation trajectories, curve fits, detection,
interventions and the architecture → parameter predictor, returned as a `MassiveResult`."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict

import numpy as np
import torch

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
    return token_blocks(cfg.source, tok, ctx=cfg.ctx, n_tokens=cfg.n_inputs * cfg.ctx), tok


def _criteria(cfg: Config) -> DetectionCriteria:
    return DetectionCriteria(mode=cfg.detect_mode, abs_thresh=cfg.abs_thresh, ratio_thresh=cfg.ratio_thresh,
                             rel_ratio=cfg.rel_ratio, mad_thresh=cfg.mad_thresh, persistence=cfg.persistence)


def checkpoint_metric(tokens: torch.Tensor, cfg: Config, tokenizer=None):
    """The per-checkpoint metric: per-layer top-k/median arrays, the held-out loss and the detected rows."""
    def metric(model: torch.nn.Module, step: int) -> dict:
        check_context(model, tokens.shape[1])
        hs = layer_outputs(model, tokens, hook=cfg.hook)  # [L, B, S, d] float64
        st = massive_stats(hs, k=cfg.top_k)
        det = detect_massive(hs, tokens, tokenizer, _criteria(cfg))
        with torch.inference_mode():
            loss = float(model(tokens, return_type="loss"))
        arch = {"n_layers": model.cfg.n_layers, "d_model": model.cfg.d_model, "n_heads": model.cfg.n_heads,
                "d_ff": model.cfg.d_mlp}
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


def run(config: Config | None = None) -> MassiveResult:
    """Massive activations across the training checkpoints of `config.model` (default: the embedded suite)."""
    from interp import models
    from interp.provenance import environment
    from interp.sources import describe_source

    cfg = (config or Config()).validate()
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    tokens, tok = _tokens(cfg)
    steps = list(cfg.steps) or models.checkpoints(cfg.model)
    per = checkpoint_sweep(cfg.model, checkpoint_metric(tokens, cfg, tok), steps, cache_dir=cfg.cache_dir or None,
                           key=_sweep_key(cfg, tokens), device=cfg.device)
    steps = sorted(per)
    top = np.array([per[s]["top"] for s in steps])  # [T, L, B, k]
    med = np.array([per[s]["median"] for s in steps])  # [T, L, B]
    agg = aggregate_ratio(top[..., 0], med, axis=-1)  # each [T, L]
    t = np.array(steps, dtype=np.float64)
    series = agg[cfg.aggregate]
    fits = fit_layers(t, series, cfg.compare_alternatives) if cfg.fit and len(steps) >= 6 else []
    grid = np.unique(np.concatenate([[0.0], np.geomspace(1, max(t.max(), 1), 200)]))
    from .curve import ma_curve_reparam

    curves = np.array([ma_curve_reparam(grid, **f["reparam"]) for f in fits]) if fits else np.zeros((0, grid.size))
    final = per[steps[-1]]
    arch = final["arch"]
    fit_rows = [{"suite": cfg.model, "layer": f["layer"] + 1, **arch, **f["params"]} for f in fits]
    extras = list(cfg.predictor_suites)
    if extras == ["auto"]:  # every other embedded suite
        extras = [n for n in models.embedded_names() if n != cfg.model]
    for extra in extras:
        sub = run(Config(**{**asdict(cfg), "model": extra, "steps": [], "predictor_suites": [], "intervene": False,
                            "compare_alternatives": False, "cache_dir": ""}))
        fit_rows += sub.details["param_table"]
    interventions = _intervene(cfg, tokens, final) if cfg.intervene else []
    predictor = _predictor(cfg, fit_rows)
    growth = series[-1] / series[0]
    top_rows = [{"layer": li, "input": b, "position": int(final["top_pos"][li][b][0]),
                 "token": tok.decode([int(tokens[b, final["top_pos"][li][b][0]])]),
                 "dim": int(final["top_dim"][li][b][0]), "value": float(final["top_value"][li][b][0]),
                 "ratio": float(final["ratio"][li][b])}
                for li in range(len(final["top"])) for b in range(len(final["top"][li]))]
    summary = {
        "model": cfg.model, "n_checkpoints": len(steps), "n_layers": int(arch["n_layers"]),
        "aggregate": cfg.aggregate,
        "ratio_step0_max": float(series[0].max()), "ratio_final_max": float(series[-1].max()),
        "ratio_max_over_training": float(series.max()), "growth_final_over_step0_max": float(growth.max()),
        "growth_max_over_step0": float((series.max(0) / series[0]).max()),
        "n_detected_final": int(final["n_detected"]), "massive_dims_final": final["dims"],
        "sun_criteria_met_final": any(r.get("sun") for r in final["detected"]),
        "mean_fit_r2": float(np.mean([f["r2"] for f in fits])) if fits else float("nan"),
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
    details = {
        "steps": steps, "arch": arch, "fits": fits, "param_table": fit_rows, "interventions": interventions,
        "predictor": predictor, "top_activations_final": top_rows, "detected_final": final["detected"],
        "detected_by_step": {str(s): per[s]["n_detected"] for s in steps},
        "loss_by_step": {str(s): per[s]["loss"] for s in steps},
        "ratio_cv_final": agg["ratio_cv"][-1].tolist(), "seconds": round(time.time() - t0, 1),
        # said, not silent: Eq. 14 has five parameters, so fewer than six checkpoints cannot be fitted
        "fit_status": ("fitted" if fits else "not asked (fit=False)" if not cfg.fit
                       else f"skipped: the curve fit needs at least 6 checkpoints, this sweep has {len(steps)}"),
    }
    arrays = {"steps": t, "ratio_of_means": agg["ratio_of_means"], "mean_of_ratios": agg["mean_of_ratios"],
              "top": top, "median": med, "fit_grid": grid, "fit_curves": curves}
    prov = {"model": cfg.model, "checkpoints": steps, "hooks": f"blocks.*.hook_{cfg.hook}",
            "token_source": describe_source(cfg.source), "n_tokens": int(tokens.numel()), **environment()}
    return MassiveResult(summary=summary, details=details, arrays=arrays, config=asdict(cfg), provenance=prov)
