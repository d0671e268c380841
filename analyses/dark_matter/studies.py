"""run(Config) -> DarkMatterResult: every study of the paper on one model layer and its SAE sweep, in order:
the error decomposition of each SAE (§3, Eq. 2-4), norm prediction (§4), per-token predictability across widths,
gradient pursuit (§6), cross-component regressions (§7), the introduced-error model (§5) and the spliced loss.
`findings` states the paper's claims against the numbers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from analyses.dark_matter.config import Config
from analyses.dark_matter.data import collect, component_hooks, middle_layer
from analyses.dark_matter.method import (
    NORM_TARGETS,
    cross_component_regression,
    decompose_sae_error,
    make_split,
    norm_prediction_baselines,
    norm_prediction_suite,
    per_token_width_predictability,
)
from analyses.dark_matter.pursuit import gradient_pursuit
from analyses.dark_matter.result import DarkMatterResult
from analyses.dark_matter.scaling import fit_saturating_power_law
from analyses.dark_matter.splice import downstream_loss
from analyses.dark_matter.synthetic import introduced_error_grid
from interp import progress
from interp.analysis import Finding, Provenance
from interp.config_checks import check_context, check_layer
from interp.errors import ConfigError
from interp.saes import effective_decoder, flat_rows, load_index, load_sae, reconstruct

_ORDER = {"topk": 0, "jumprelu": 1, "standard": 2}


def default_sae_dir(model: str) -> Path:
    """data/saes/<model> inside the checkout."""
    from interp.models import data_dir

    return Path(data_dir()) / "saes" / Path(str(model)).name


def components_in_use(hooks: dict[str, str], entries: list[dict]) -> dict[str, str]:
    """The target residual stream and every component that has an SAE in the index: component -> hook."""
    return {c: h for c, h in hooks.items() if c == "resid" or any(e["hook"] == h for e in entries)}


def cache_hooks(config: Config, n_layers: int) -> list[str]:
    """The hooks `run(config)` reads, for extracting a cache it can take (Config.cache) from a model of n_layers."""
    layer = config.layer if config.layer >= 0 else n_layers // 2
    index = load_index(config.saes or default_sae_dir(config.model))
    return list(components_in_use(component_hooks(layer), index["saes"]).values())


def _pick_reference(entries: list[dict], name: str) -> dict:
    if name:
        for e in entries:
            if e["name"] == name:
                return e
        raise ConfigError(f"no SAE named '{name}'", hint=f"choose one of {', '.join(e['name'] for e in entries)}")
    topk = [e for e in entries if e["architecture"] == "topk"]
    pool = topk or entries
    at16 = [e for e in pool if round(e["d_sae"] / e["d_in"]) == 16]
    return at16[0] if at16 else max(pool, key=lambda e: e["d_sae"])


def findings(summary: dict) -> list[Finding]:
    """The paper's checkable claims (Engels et al. 2024) against this run's numbers."""
    return [
        Finding.compare("The SAE error norm is more than 90 % linearly predictable from the activation",
                        summary["r2_norm"], ">", 0.9, key="r2_norm", paper="> 0.90 (abstract; Fig. 7)"),
        Finding.compare("About half of the SAE error vector is linearly predictable from the activation",
                        summary["r2_vec"], "between", [0.3, 0.7], key="r2_vec", paper="≈ 0.5 (abstract)"),
        Finding.compare("Adding the linear prediction of the error lowers the FVU of every SAE",
                        float(summary["fvu_sae_plus_linear_le_fvu_sae_all"]), ">=", 1.0,
                        key="fvu_sae_plus_linear_le_fvu_sae_all", paper="FVU(Sae + linear) < FVU(Sae) for all SAEs "
                        "(Fig. 3)"),
        Finding.compare("Per-token error norms are predictable across SAE widths (every off-diagonal R² above 0)",
                        summary["per_token_r2_min_offdiag"], ">", 0.0, key="per_token_r2_min_offdiag",
                        paper="high pairwise R² between widths (Fig. 5)",
                        why_not_applicable="the sweep has a single SAE per architecture"),
    ]


def _check_entry(entry: dict, sae) -> None:
    """The index must describe the SAE folder it points at: its width feeds the scaling fits, its hook the rows.
    Transcoders are refused: the decomposition x = Sae(x) + error needs an SAE that reconstructs its own hook."""
    from interp.transcoders import is_transcoder, transcoder_hooks

    if is_transcoder(sae):
        h_in, h_out = transcoder_hooks(sae, entry.get("hook"), entry.get("hook_out") or entry.get("hook"))
        raise ConfigError(f"{entry['name']} is a transcoder ({h_in} -> {h_out}); the dark-matter decomposition "
                          "needs SAEs that reconstruct their own hook",
                          hint="leave transcoders out of its index; score them with `interp saes eval`")
    own = getattr(getattr(sae.cfg, "metadata", None), "hook_name", None)
    if int(entry["d_sae"]) != int(sae.cfg.d_sae) or (own and own != entry["hook"]):
        raise ConfigError(f"SAE index entry {entry['name']} says d_sae={entry['d_sae']} on {entry['hook']}, its "
                          f"files say d_sae={sae.cfg.d_sae} on {own}",
                          hint="rebuild the index (python -m apps.build.saes) or fix index.json")


@dataclass
class SweepDecomposition:
    """§3 for every SAE of the sweep: its row of numbers, its decomposition and reconstruction, L0, norm-prediction
    R² per target, and the per-token norms of its error and nonlinear error [n_tokens]."""

    rows: list[dict]
    decs: dict
    suites: list[list[float]]
    norms: list[torch.Tensor]
    nonlin_norms: list[torch.Tensor]
    l0s: dict
    saes: dict


def decompose_sweep(cfg: Config, sweep: list[dict], x: torch.Tensor, split, kw: dict, hook: str) -> SweepDecomposition:
    """Eq. 2-4 per SAE: x = Sae(x) + LinearError + NonlinearError, with the linear part fitted on the train split;
    the error-norm prediction suite (§4) per SAE."""
    out = SweepDecomposition([], {}, [], [], [], {}, {})
    progress.stage("dark-matter", f"decomposing the errors of {len(sweep)} SAEs on {hook}")
    for e in progress.bar(sweep, "SAEs", unit="sae"):
        sae = load_sae(e["abs_path"])
        _check_entry(e, sae)
        out.saes[e["name"]] = sae
        rec, l0 = reconstruct(sae, x)
        dec = decompose_sae_error(x, rec, split=split, **kw)
        out.decs[e["name"]] = (dec, rec)
        out.l0s[e["name"]] = l0
        suite = norm_prediction_suite(x, rec, dec, fit_intercept=cfg.fit_intercept)
        out.suites.append([suite[k] for k in NORM_TARGETS])
        out.norms.append(dec.sae_error.norm(dim=1))
        out.nonlin_norms.append(dec.nonlinear_error.norm(dim=1))
        out.rows.append({"name": e["name"], "architecture": e["architecture"], "d_sae": e["d_sae"],
                         "expansion": e["d_sae"] / e["d_in"], "l0": float(l0[split.test].mean()), **dec.scalars(),
                         **{f"norm_r2_{k}": v for k, v in suite.items()}})
    return out


def scaling_study(cfg: Config, d: SweepDecomposition) -> tuple[dict, dict]:
    """Per architecture: saturating power laws of FVU against width (≥ 3 widths, Fig. 3) and the per-token
    predictability of error norms across widths (Fig. 5)."""
    fits, per_token = {}, {}
    rows = d.rows
    for arch in sorted({r["architecture"] for r in rows}, key=lambda a: _ORDER.get(a, 9)):
        idx = [i for i, r in enumerate(rows) if r["architecture"] == arch]
        w = np.array([rows[i]["d_sae"] for i in idx], dtype=np.float64)
        fits[arch] = {}
        for q in ("fvu_sae", "fvu_sae_plus_linear", "r2_vec", "r2_norm"):
            y = np.array([rows[i][q] for i in idx])
            fits[arch][q] = fit_saturating_power_law(w, y) if len(idx) >= 3 and q.startswith("fvu") else None
        fits[arch]["nonlinear_band"] = float(np.mean([rows[i]["fvu_sae_plus_linear"] for i in idx]))
        r2m, gain = per_token_width_predictability(torch.stack([d.norms[i] for i in idx], 1),
                                                    torch.stack([d.nonlin_norms[i] for i in idx], 1), seed=1,
                                                    train_frac=cfg.train_frac)
        per_token[arch] = {"names": [rows[i]["name"] for i in idx], "r2": r2m.numpy(), "gain_pct": gain.numpy()}
    return fits, per_token


def run(config: Config | None = None, *, model: torch.nn.Module | None = None) -> DarkMatterResult:
    """Decompose the SAE error of every SAE in the sweep and run the paper's follow-up studies."""
    from interp.models import load, resolved_step
    cfg = (config or Config()).validate()
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    user_model = model is not None
    model = model if user_model else load(cfg.model, step=cfg.load_step, device=cfg.device)
    # the step that ran (checkpoint None means the final one); a user's model names its own step or none
    step = resolved_step(None, None, model) if user_model else resolved_step(cfg.model, cfg.load_step, model)
    check_context(model, cfg.ctx)
    layer = cfg.layer if cfg.layer >= 0 else middle_layer(model)
    check_layer(model, layer)
    hooks = component_hooks(layer)
    index = load_index(cfg.saes or default_sae_dir(cfg.model))
    entries = [e for e in index["saes"] if e["hook"] in hooks.values()]
    for e in entries:  # before any slow work: a transcoder at a component hook would reach the §7 regressions
        if e.get("hook_out") not in (None, e["hook"]) or e.get("kind") == "transcoder":
            raise ConfigError(f"{e['name']} is a transcoder ({e['hook']} -> {e.get('hook_out')}); the dark-matter "
                              "decomposition needs SAEs that reconstruct their own hook",
                              hint="leave transcoders out of its index; score them with `interp saes eval`")
    sweep = sorted([e for e in entries if e["hook"] == hooks["resid"]],
                   key=lambda e: (_ORDER.get(e["architecture"], 9), e["d_sae"]))
    if not sweep:
        raise ConfigError(f"no SAE for {hooks['resid']} in the index",
                          hint="train them with python -m apps.build.saes --layer N")
    hooks = components_in_use(hooks, entries)
    used = tuple(hooks)
    progress.stage("dark-matter", f"collecting activations of {', '.join(used)}")
    data = collect(model, cfg, layer, used)
    x = data.acts["resid"]
    split = make_split(x.shape[0], train_frac=cfg.train_frac, seed=cfg.seed)
    kw = {"fit_intercept": cfg.fit_intercept, "ridge": cfg.ridge, "convention": cfg.r2_convention}

    dec_sweep = decompose_sweep(cfg, sweep, x, split, kw, hooks["resid"])
    rows, decs, suites, l0s, saes = dec_sweep.rows, dec_sweep.decs, dec_sweep.suites, dec_sweep.l0s, dec_sweep.saes
    progress.stage("dark-matter", "power laws and per-token predictability across widths")
    fits, per_token = scaling_study(cfg, dec_sweep)
    ref = _pick_reference(sweep, cfg.reference_sae)
    ref_dec, ref_rec = decs[ref["name"]]
    ref_sae = saes[ref["name"]]
    baselines = norm_prediction_baselines(x, ref_rec, split, token_ids=data.token_ids, l0=l0s[ref["name"]],
                                          token_loss=None if data.token_loss is None or
                                          torch.isnan(data.token_loss).any() else data.token_loss)

    progress.stage("dark-matter", "gradient pursuit")
    pursuit = _pursuit(cfg, x, split, sweep, saes, decs, l0s, kw)
    progress.stage("dark-matter", "cross-component regressions")
    cross = _cross(cfg, data, entries, hooks, split, ref_dec, ref_rec, kw)
    progress.stage("dark-matter", "introduced-error grid")
    synthetic = _synthetic(cfg, x, ref_sae)
    progress.stage("dark-matter", "spliced downstream loss")
    downstream = downstream_loss(model, data, hooks["resid"], ref_rec, ref_dec, cfg.downstream_blocks,
                                 cfg.batch_size) if cfg.downstream_blocks and data.blocks is not None else {}
    trace = _trace(cfg, model, data, split, ref_dec)

    fvu_falls = {a: bool(np.all(np.diff([r["fvu_sae"] for r in rows if r["architecture"] == a]) < 0))
                 for a in fits}
    linear_helps = all(r["fvu_sae_plus_linear"] <= r["fvu_sae"] for r in rows)
    offdiag = [float(v["r2"][~np.eye(len(v["names"]), dtype=bool)].min()) for v in per_token.values()
               if len(v["names"]) > 1]
    summary = {
        "reference_sae": ref["name"], "layer": layer, "n_tokens": int(x.shape[0]), "n_test": int(len(split.test)),
        "r2_norm": ref_dec.r2_norm, "r2_vec": ref_dec.r2_vec, "fvu_sae": ref_dec.fvu_sae,
        "fvu_sae_plus_linear": ref_dec.fvu_sae_plus_linear,
        **{f"fvu_falls_with_width_{a}": v for a, v in fvu_falls.items()},
        "fvu_sae_plus_linear_le_fvu_sae_all": linear_helps,
        "per_token_r2_min_offdiag": min(offdiag) if offdiag else float("nan"),
        "shrinkage_rel_dist": ref_dec.shrinkage.get("rel_dist_from_scaled_identity", float("nan")),
        **({f"fvu_asymptote_c_{a}": f["fvu_sae"]["c"] for a, f in fits.items() if f["fvu_sae"]}),
        "seconds": round(time.time() - t0, 1),
    }
    arrays = {
        "widths": np.array([r["d_sae"] for r in rows], dtype=np.int64),
        "fvu_sae": np.array([r["fvu_sae"] for r in rows]), "fvu_sae_plus_linear":
            np.array([r["fvu_sae_plus_linear"] for r in rows]),
        "r2_vec": np.array([r["r2_vec"] for r in rows]), "r2_norm": np.array([r["r2_norm"] for r in rows]),
        "norm_suite_r2": np.array(suites), "trace_linear_norm": trace["linear"], "trace_nonlinear_norm":
            trace["nonlinear"], "trace_error_norm": trace["error"],
        **{f"per_token_r2_{a}": v["r2"] for a, v in per_token.items()},
        **{f"per_token_gain_pct_{a}": v["gain_pct"] for a, v in per_token.items()},
    }
    details = {
        "saes": rows, "power_law_fits": fits, "norm_targets": list(NORM_TARGETS),
        "norm_baselines": baselines, "per_token_names": {a: v["names"] for a, v in per_token.items()},
        "pursuit": pursuit, "cross_component": cross, "introduced_error": synthetic, "downstream_loss": downstream,
        "trace_tokens": trace["tokens"], "trace_positions": trace["positions"], "hooks": hooks,
        "sae_index": {k: v for k, v in index.items() if k != "saes"},
        "reference": {"name": ref["name"], **{k: v for k, v in ref_dec.shrinkage.items()}},
    }
    provenance = Provenance.collect(model=cfg.model, step=step, data=data.source, n_tokens=int(x.shape[0]),
                                    hooks=list(hooks.values()), cache=cfg.cache, positions=cfg.positions,
                                    sae_dir=str(cfg.saes or default_sae_dir(cfg.model)))
    return DarkMatterResult(summary=summary, details=details, arrays=arrays, config=cfg.to_dict(),
                            provenance=provenance.to_dict(), findings=findings(summary))


def _pursuit(cfg: Config, x, split, sweep, saes, decs, l0s, kw) -> list[dict]:
    """§6: re-encode test tokens by gradient pursuit at each token's own L0; FVU and nonlinear FVU vs the encoder."""
    if not cfg.pursuit_tokens:
        return []
    sub = split.test[: cfg.pursuit_tokens]
    xs = x[sub]
    sub_split = make_split(len(sub), train_frac=cfg.train_frac, seed=cfg.seed + 1)
    out = []
    for e in sweep:
        sae = saes[e["name"]]
        D, b = effective_decoder(sae)
        _, prec = gradient_pursuit(xs, D, b, l0s[e["name"]][sub].long())
        d_enc = decompose_sae_error(xs, decs[e["name"]][1][sub], split=sub_split, **kw)
        d_pur = decompose_sae_error(xs, prec, split=sub_split, **kw)
        out.append({"name": e["name"], "d_sae": e["d_sae"], "architecture": e["architecture"],
                    "fvu_encoder": d_enc.fvu_sae, "fvu_pursuit": d_pur.fvu_sae,
                    "nonlinear_fvu_encoder": d_enc.fvu_sae_plus_linear,
                    "nonlinear_fvu_pursuit": d_pur.fvu_sae_plus_linear})
    return out


def _cross(cfg: Config, data, entries, hooks, split, ref_dec, ref_rec, kw) -> dict:
    """§7 / Fig. 10b: regress the reference SAE's three errors on other components' SAE outputs (and their
    activations and errors); the paper's sources are the previous residual, the MLP output and attn.hook_z."""
    targets = {"sae_error": ref_dec.sae_error, "linear_error": ref_dec.linear_error,
               "nonlinear_error": ref_dec.nonlinear_error}
    sources: dict[str, torch.Tensor] = {}
    for comp in (c for c in hooks if c != "resid"):  # the components that have an SAE in the index
        e = next(e for e in entries if e["hook"] == hooks[comp])
        xs = data.acts[comp]
        rec, _ = reconstruct(load_sae(e["abs_path"]), xs)
        d = decompose_sae_error(xs, rec, split=split, **kw)
        sources.update({f"{comp}:sae_recon": rec, f"{comp}:acts": xs, f"{comp}:linear_error": d.linear_error,
                        f"{comp}:nonlinear_error": d.nonlinear_error})
    sources["resid:sae_recon"] = ref_rec
    table = cross_component_regression(sources, targets, split, fit_intercept=cfg.fit_intercept,
                                       convention=cfg.r2_convention)
    return {"sources": list(sources), "targets": list(targets), "r2": table}


def _synthetic(cfg: Config, x, sae) -> dict:
    """§5: the introduced-error model on clean activations x := Sae(acts) from the reference SAE.

    codes = encode(Sae(acts)), so rec = decode(codes ⊙ mask) keeps the SAE's re-encoding error at 0% ablation;
    features are ranked by their average activation on the real activations (`get_feature_freqs`).
    """
    if not cfg.synthetic_tokens:
        return {}
    xs = x[: cfg.synthetic_tokens]
    with torch.no_grad(), flat_rows(sae):
        feats = sae.encode(xs)
        clean = sae.decode(feats)
        codes = sae.encode(clean).float()
        clean = clean.float()
    D, b = effective_decoder(sae)
    out = introduced_error_grid(codes, D, b, sigmas=tuple(cfg.synthetic_sigmas), ablate_frac=cfg.synthetic_ablate,
                                seed=cfg.seed, x=clean, feature_means=feats.float().mean(0),
                                fit_intercept=cfg.fit_intercept)
    scale = float(clean.std())
    return {**out, "activation_std": scale}


def _trace(cfg: Config, model, data, split, dec) -> dict:
    """Per-token ‖LinearError‖, ‖NonlinearError‖, ‖SaeError‖ over the first rows (sequence order), with tokens."""
    n = min(cfg.trace_tokens, data.token_ids.shape[0])
    tok = getattr(model, "tokenizer", None)
    ids = data.token_ids[:n].tolist()
    words = [tok.decode([i]) for i in ids] if tok is not None else [str(i) for i in ids]
    return {"linear": dec.linear_error[:n].norm(dim=1).numpy(), "nonlinear": dec.nonlinear_error[:n].norm(dim=1)
            .numpy(), "error": dec.sae_error[:n].norm(dim=1).numpy(), "tokens": words, "start": 0,
            "positions": data.seq_pos[:n].tolist()}
