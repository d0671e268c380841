"""`run(Config)`: the papers' studies in order, then their claims against the numbers.

1. `census` (Lazy Neuron): per checkpoint and layer, the nonzero fraction of the MLP activations (exact zeros: ReLU
   only) and FAT-ε's kept fraction, on held-out text.
2. `ppl_sparsity` (Sparsing Law §4.2, Algorithm 1): per suite and tolerance p, the CETT value c* that keeps the mean
   perplexity ratio of the last post-warm-up checkpoints under 1 + p; then each checkpoint's activation ratio at
   c* (thresholds τ_ℓ recomputed per checkpoint).
3. `trends` (§5.1): Eq. 4 and Eq. 5 fitted to A(D) after warm-up; which form fits, and the limit A0.
4. `compare_methods` (TEAL, WINA, R-Sparse, CATS): held-out loss at equal input sparsity, thresholds calibrated on
   other tokens; all layers at once, and one layer at a time for the winner per layer.
5. `speed_bound`: the bandwidth bound 1/(1 − s) of each projection at its realised sparsity (measured kernel
   speed-ups are benchmarks/sparsity_speed.py's, on a GPU).

Models are transformer-lens ones or natively run Hugging Face decoders, suites embedded ones or a user's run
folder of checkpoint subfolders: the hooks are canonical names either way, the weights come from `weights`, the
checkpoints and tokens per step from `suites`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from interp import progress
from interp.analysis import Finding, Provenance

from .config import Config
from .forward import PROJECTIONS, InputRule, cett_edit, channel_norms, consumer_matrix, hook_name, projection_rows
from .methods import abs_quantile_threshold, rsparse_budget
from .metrics import activation_ratio, cett_threshold, nnz_fraction
from .result import SparsityResult
from .search import cett_ppl_search
from .suites import SuiteData, capture_acts, load_checkpoint, load_suite, mean_loss, steps_of
from .trends import fit_trends
from .weights import activation_name, mlp_out_matrix, n_layers, refuse_unsupported

PAPER_RELU_A0 = 0.0648  # Sparsing Law 2.4B ReLU limit (Table 2)

# the short names the studies (and the tests) use for the shared helpers of `suites`
_suite, _load, _acts, _loss = load_suite, load_checkpoint, capture_acts, mean_loss


# ------------------------------------------------------------------------------------------------ study 1
def census(cfg: Config, suite: SuiteData) -> dict[str, np.ndarray]:
    """nnz and FAT-ε kept fractions [T, L] at every checkpoint, on the evaluation blocks."""
    out = {"nnz": [], **{f"fat_{e:g}": [] for e in cfg.fat_eps}}
    for step in progress.bar(suite.steps, f"{suite.name} census", unit="ckpt"):
        model = _load(suite.name, step, cfg.device)
        hooks = [f"blocks.{li}.mlp.hook_post" for li in range(n_layers(model))]
        acts = _acts(model, suite.eval_blocks, hooks, cfg.batch_size)
        out["nnz"].append([nnz_fraction(acts[h]) for h in hooks])
        for e in cfg.fat_eps:
            out[f"fat_{e:g}"].append([nnz_fraction(acts[h], e) for h in hooks])
    return {k: np.asarray(v) for k, v in out.items()}


# ------------------------------------------------------------------------------------------------ study 2
@dataclass
class PPLSparsity:
    """c* per tolerance, and the activation ratio [T, L] at c* for every post-warm-up checkpoint."""

    c_star: dict[str, float] = field(default_factory=dict)
    ratio: dict[str, np.ndarray] = field(default_factory=dict)
    ppl_ratio_at_c: dict[str, float] = field(default_factory=dict)


def _mlp_state(cfg: Config, suite: SuiteData, step: int):
    model = _load(suite.name, step, cfg.device)
    hooks = [f"blocks.{li}.mlp.hook_post" for li in range(n_layers(model))]
    calib = _acts(model, suite.calib_blocks, hooks, cfg.batch_size)
    rows = {h: projection_rows(calib[h]) for h in hooks}
    w_outs = {h: mlp_out_matrix(model, li).detach().double() for li, h in enumerate(hooks)}
    dense = _loss(model, suite.eval_blocks, {}, cfg.batch_size)
    return model, hooks, rows, w_outs, dense


def _edits_at(c: float, hooks, rows, w_outs) -> dict:
    return {h: cett_edit(w_outs[h], cett_threshold(rows[h], w_outs[h], c, iters=30)) for h in hooks}


def ppl_sparsity(cfg: Config, suite: SuiteData) -> PPLSparsity:
    """Algorithm 1 on the last `last_k` post-warm-up checkpoints, then A_ℓ(c*) at every post-warm-up one."""
    post = suite.post_warmup()
    search = [_mlp_state(cfg, suite, s) for s in post[-cfg.last_k:]]
    out = PPLSparsity()
    for p in cfg.ppl_tolerances:
        progress.stage("sparsity", f"{suite.name}: CETT-PPL-{p:.0%} by bisection on {len(search)} checkpoints")

        def loss_at(c: float) -> list[float]:
            return [_loss(m, suite.eval_blocks, _edits_at(c, hooks, rows, w), cfg.batch_size)
                    for m, hooks, rows, w, _ in search]

        c_star = cett_ppl_search(loss_at, [st[4] for st in search], p=p, eps=cfg.search_eps)
        ratios = []
        for step in progress.bar(post, f"A(c*={c_star:.3g})", unit="ckpt"):
            model, hooks, rows, w_outs, _ = _mlp_state(cfg, suite, step)
            ratios.append([activation_ratio(rows[h], w_outs[h], cett_threshold(rows[h], w_outs[h], c_star, iters=30))
                           for h in hooks])
        key = f"{p:g}"
        out.c_star[key] = c_star
        out.ratio[key] = np.asarray(ratios)
        sparse = loss_at(c_star)
        out.ppl_ratio_at_c[key] = float(np.mean([math.exp(s - st[4]) for s, st in zip(sparse, search)]))
    return out


# ------------------------------------------------------------------------------------------------ study 3
def trends(cfg: Config, suite: SuiteData, ppl: PPLSparsity) -> dict[str, dict]:
    """Both laws fitted to the mean activation ratio at c* over post-warm-up checkpoints, per tolerance (a run with
    fewer than 4 of them, Eq. 4's parameter count, gets its points and no fit)."""
    d = np.asarray(suite.post_warmup(), dtype=np.float64) * suite.tokens_per_step / cfg.token_unit
    out = {}
    for key, ratio in ppl.ratio.items():
        a = ratio.mean(1)
        if len(d) < 4:
            out[key] = {"D": d.tolist(), "A": a.tolist(), "winner": None, "relu": None, "silu": None, "a0": None,
                        "note": f"{len(d)} post-warm-up checkpoints: the laws need at least 4"}
            continue
        tr = fit_trends(d, a)
        out[key] = {"D": d.tolist(), "A": a.tolist(), "winner": tr.winner,
                    "relu": {"params": tr.relu.params, "r2": tr.relu.r2, "aic": tr.relu.aic},
                    "silu": {"params": tr.silu.params, "r2": tr.silu.r2, "aic": tr.silu.aic},
                    "a0": tr.best.params["a0"] if tr.best else None}
    return out


# ------------------------------------------------------------------------------------------------ study 4
def _rules(model, calib: dict[str, torch.Tensor], s: float, method: str, alpha: float) -> dict[str, InputRule]:
    """Per projection input (hook name), the rule that skips a fraction s of its channels on the calibration rows."""
    rules = {}
    for li in range(n_layers(model)):
        for proj in PROJECTIONS:
            if method == "cats" and proj != "mlp_out":
                continue  # CATS sparsifies the MLP activation only
            h = hook_name(proj, li)
            x = projection_rows(calib[h])
            c = channel_norms(model, li, proj)
            if method in ("teal", "cats"):
                rules[h] = InputRule(abs_quantile_threshold(x, s))
            elif method == "wina":
                rules[h] = InputRule(abs_quantile_threshold(x * c, s), scale=c)
            elif method == "rsparse":
                n, m = consumer_matrix(model, li, proj).shape
                k, r = rsparse_budget(n, m, s, alpha)
                keep_frac = k / n  # exact channels: the top k by |x_j| c_j; the rest through rank r
                t = abs_quantile_threshold(x * c, 1 - keep_frac) if keep_frac > 0 else float("inf")
                _, _, vh = torch.linalg.svd(consumer_matrix(model, li, proj).detach().double().T,
                                            full_matrices=False)
                rules[h] = InputRule(t, scale=c, lowrank=vh[:r].T @ vh[:r])
            else:
                raise ValueError(method)
    return rules


def compare_methods(cfg: Config, suite: SuiteData) -> dict:
    """Loss increase of each method at each sparsity (all layers; and per layer), final checkpoint of cfg.model."""
    step = suite.steps[-1]
    model = _load(suite.name, step, cfg.device)
    layers = n_layers(model)
    hooks = [hook_name(p, li) for li in range(layers) for p in PROJECTIONS]
    calib = _calibration(cfg, model, suite, hooks)
    dense = _loss(model, suite.eval_blocks, {}, cfg.batch_size)
    methods = ("teal", "wina", "rsparse", "cats")
    table: dict = {"dense_loss": dense, "step": step if step >= 0 else None, "all_layers": {}, "per_layer": {}}
    progress.stage("sparsity", f"TEAL / WINA / R-Sparse / CATS on {suite.name}@{step} at {cfg.sparsities}")
    for s in progress.bar(cfg.sparsities, "sparsities", unit="s"):
        key = f"{s:g}"
        table["all_layers"][key], table["per_layer"][key] = {}, {}
        for method in methods:
            rules = _rules(model, calib, s, method, cfg.rsparse_alpha)
            table["all_layers"][key][method] = _loss(model, suite.eval_blocks, rules, cfg.batch_size) - dense
            if cfg.per_layer:
                table["per_layer"][key][method] = [
                    _loss(model, suite.eval_blocks, {h: r for h, r in rules.items() if h.startswith(f"blocks.{li}.")},
                          cfg.batch_size) - dense for li in range(layers)]
        if cfg.per_layer:
            per = table["per_layer"][key]
            table["per_layer"][key]["winner"] = [min(methods, key=lambda m, li=li: per[m][li])
                                                 for li in range(layers)]
    return table


def _calibration(cfg: Config, model, suite: SuiteData, hooks: list[str]) -> dict[str, torch.Tensor]:
    """The hooks' rows from `cfg.cache` when given (not the evaluation text), else from the calibration blocks."""
    if cfg.cache:
        from interp.cache import open_cache
        from interp.errors import ConfigError

        reader = open_cache(cfg.cache)
        missing = [h for h in hooks if h not in reader.hooks]
        if missing:
            raise ConfigError(f"cache {cfg.cache} lacks {missing[0]}", hint="extract: interp extract --hooks "
                              "'blocks.*.ln1.hook_normalized' 'blocks.*.attn.hook_z' 'blocks.*.ln2.hook_normalized' "
                              "'blocks.*.mlp.hook_post'")
        n = min(reader.n_rows, cfg.calib_tokens)
        return {h: reader.read(h, 0, n).double()[None] for h in hooks}
    return _acts(model, suite.calib_blocks, hooks, cfg.batch_size)


# ------------------------------------------------------------------------------------------------ study 5
def speed_bound(model_cfg: dict, sparsities: list[float]) -> dict:
    """The bandwidth bound of batch-1 decode: 1/(1 − s) per projection, 1/(1 − Σ P_p s / Σ P_p) for the block."""
    return {f"{s:g}": {"projection": 1 / (1 - s), "block": 1 / (1 - s)} for s in sparsities}


def measured_speed(cfg: Config) -> dict | None:
    """The kernel and decode timings of benchmarks/sparsity_speed.py (measured on a GPU, machine named), if any."""
    import json
    from pathlib import Path

    path = Path(cfg.speed_results) if cfg.speed_results else (
        Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "sparsity_speed_shapes.json")
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except ValueError:
        from interp.errors import ConfigError

        raise ConfigError(f"{path} is not JSON", hint="pass the --out file of benchmarks/sparsity_speed.py") from None
    return {"file": str(path), "machine": doc.get("machine"), "layer": doc.get("layer", []),
            "decode": doc.get("decode", [])}


def size_census(cfg: Config) -> dict[str, dict]:
    """Lazy Neuron across model sizes: the census of each size suite (FAT-ε; its activation has no exact zeros)."""
    from interp.models import embedded_names
    from interp.models.checkpoint_dirs import is_checkpoint_dir

    out = {}
    for name in cfg.size_suites:
        if name not in embedded_names() and not is_checkpoint_dir(name):
            continue
        progress.stage("sparsity", f"{name}: census across checkpoints (model sizes)")
        suite = _suite(cfg, name)
        cen = census(cfg, suite)
        out[name] = {"steps": suite.steps, "census": cen}
    return out


# ------------------------------------------------------------------------------------------------ findings
def findings(summary: dict) -> list[Finding]:
    def get(k):
        return summary.get(k)

    return [
        Finding.compare("Trained ReLU MLPs are sparse: few activations are nonzero (final checkpoint, mean over "
                        "layers)", get("relu_nnz_final"), "<=", 0.10, key="relu_nnz_final",
                        paper="3.0 % nonzero in T5-Base, 6.3 % in ViT-B16 (Lazy Neuron)",
                        why_not_applicable="no ReLU suite in this run"),
        Finding.compare("The ReLU activation ratio (at CETT-PPL-1%) falls with training data as Eq. 4 says (R² of "
                        "the logspace power law)", get("relu_eq4_r2"), ">=", 0.9, key="relu_eq4_r2",
                        paper="Eq. 4 fits every ReLU model, limits 6-8 % (Table 2)",
                        why_not_applicable="no ReLU suite in this run, or fewer than 4 checkpoints after warm-up"),
        Finding.compare("The SiLU activation ratio (at CETT-PPL-1%) rises with training data as Eq. 5 says (R² of "
                        "the convergent power law)", get("silu_eq5_r2"), ">=", 0.9, key="silu_eq5_r2",
                        paper="Eq. 5 fits every SiLU model, limits 38-41 % (Table 2)",
                        why_not_applicable="no SiLU suite in this run, or fewer than 4 checkpoints after warm-up"),
        Finding.compare("At the same perplexity tolerance ReLU is sparser than SiLU (final activation ratio at "
                        "CETT-PPL-1%, ReLU minus SiLU)", get("relu_minus_silu_ratio"), "<", 0.0,
                        key="relu_minus_silu_ratio", paper="ReLU limits 6-8 % vs SiLU 38-41 % (Table 2)",
                        why_not_applicable="needs both a ReLU and a SiLU suite"),
        Finding.compare("Training-free input sparsity of 40 % costs little (TEAL, all projections, held-out "
                        "perplexity ratio)", get("teal_ppl_ratio_0.4"), "<=", 1.05, key="teal_ppl_ratio_0.4",
                        paper="40-50 % with minimal degradation on 7B-70B models (TEAL)",
                        why_not_applicable="0.4 is not among the sparsities"),
        Finding.compare("Weighting inputs by their column norms (WINA) loses less than magnitude alone (TEAL) at "
                        "50 % (loss increase, WINA minus TEAL)", get("wina_minus_teal_0.5"), "<=", 0.0,
                        key="wina_minus_teal_0.5", paper="WINA beats TEAL by 2.9 points at 65 % on Qwen-2.5-7B",
                        why_not_applicable="0.5 is not among the sparsities"),
        Finding.compare("Larger models are sparser (FAT-0.01 kept fraction of the final checkpoint, larger suite "
                        "minus smaller)", get("larger_minus_smaller_fat"), "<", 0.0, key="larger_minus_smaller_fat",
                        paper="sparsity grows with depth and width (Lazy Neuron)",
                        why_not_applicable="fewer than two size suites in this run"),
        Finding.compare("50 % input sparsity speeds up memory-bound batch-1 decode (Llama-7B shape, measured)",
                        get("decode_speedup_0.5"), ">=", 1.3, key="decode_speedup_0.5",
                        paper="1.8x at 50 % and 1.53x at 40 % (TEAL's kernels)",
                        why_not_applicable="no benchmarks/sparsity_speed.py results were found",
                        detail=f"Measured on {get('speed_machine') or 'n/a'}."),
    ]


def run(config: Config | None = None) -> SparsityResult:
    """Activation sparsity of `config.suites` across training, and the methods compared on `config.model`."""
    cfg = (config or Config()).validate()
    refuse_unsupported(cfg.model, methods=True)
    for name in cfg.suites:  # before any slow work: encoders, single folders and unknown names
        refuse_unsupported(name, methods=False)
        steps_of(name, single_ok=False)
    torch.manual_seed(cfg.seed)
    arrays: dict[str, np.ndarray] = {}
    details: dict = {"suites": {}, "methods": {}}
    summary: dict = {}
    for name in cfg.suites:
        progress.stage("sparsity", f"{name}: census of every checkpoint")
        suite = _suite(cfg, name)
        if not suite.post_warmup():
            from interp.errors import ConfigError

            raise ConfigError(f"{name} has no checkpoint at or after its warm-up (step {max(suite.warmup, 1)}; steps "
                              f"{suite.steps[0]}..{suite.steps[-1]})", hint="set warmup_steps=0")
        cen = census(cfg, suite)
        ppl = ppl_sparsity(cfg, suite)
        tr = trends(cfg, suite, ppl)
        act = _suite_act(name)
        for k, v in cen.items():
            arrays[f"{name}.{k}"] = v
        for k, v in ppl.ratio.items():
            arrays[f"{name}.ratio_ppl_{k}"] = v
        arrays[f"{name}.steps"] = np.asarray(suite.steps, dtype=np.int64)
        arrays[f"{name}.post_warmup_steps"] = np.asarray(suite.post_warmup(), dtype=np.int64)
        details["suites"][name] = {"activation": act, "c_star": ppl.c_star, "ppl_ratio_at_c_star":
                                   ppl.ppl_ratio_at_c, "trends": tr, "warmup": suite.warmup,
                                   "tokens_per_step": suite.tokens_per_step}
        if act in ("relu", "silu"):
            summary[f"{act}_nnz_final"] = float(cen["nnz"][-1].mean())
            first = f"{cfg.ppl_tolerances[0]:g}"
            summary[f"{act}_ratio_final"] = float(ppl.ratio[first][-1].mean())
            summary[f"{act}_winner"] = tr[first]["winner"]
            summary["relu_eq4_r2" if act == "relu" else "silu_eq5_r2"] = (tr[first][act] or {}).get("r2")
    if "relu_ratio_final" in summary and "silu_ratio_final" in summary:
        summary["relu_minus_silu_ratio"] = summary["relu_ratio_final"] - summary["silu_ratio_final"]
    sizes = size_census(cfg)
    for name, info in sizes.items():
        for k, v in info["census"].items():
            arrays[f"{name}.{k}"] = v
        arrays[f"{name}.steps"] = np.asarray(info["steps"], dtype=np.int64)
    details["sizes"] = {name: {"n_layers": int(info["census"]["nnz"].shape[1]),
                               "fat_0.01_final": float(info["census"]["fat_0.01"][-1].mean())
                               if "fat_0.01" in info["census"] else None} for name, info in sizes.items()}
    kept = [v["fat_0.01_final"] for v in details["sizes"].values() if v["fat_0.01_final"] is not None]
    if len(kept) >= 2:
        summary["larger_minus_smaller_fat"] = kept[-1] - kept[0]
    speed = measured_speed(cfg)
    if speed:
        details["speed_measured"] = speed
        summary["speed_machine"] = speed["machine"]
        for row in speed["decode"]:
            summary[f"decode_speedup_{row['sparsity']:g}"] = row["speedup"]
    suite = load_suite(cfg, cfg.model, single_ok=True)
    methods = compare_methods(cfg, suite)
    details["methods"] = methods
    details["speed_bound"] = speed_bound({}, cfg.sparsities)
    for key, row in methods["all_layers"].items():
        summary[f"teal_ppl_ratio_{key}"] = math.exp(row["teal"])
        summary[f"wina_minus_teal_{key}"] = row["wina"] - row["teal"]
    prov = Provenance.collect(model=cfg.model, step=methods["step"], data=cfg.data, n_tokens=cfg.n_tokens,
                              hooks=["blocks.*.mlp.hook_post", "blocks.*.ln1.hook_normalized", "blocks.*.attn.hook_z",
                                     "blocks.*.ln2.hook_normalized"], cache=cfg.cache, suites=cfg.suites)
    return SparsityResult(summary=summary, details=details, arrays=arrays, config=cfg.to_dict(),
                          provenance=prov.to_dict(), findings=findings(summary))


def _suite_act(name: str) -> str:
    """The activation function of the suite's final checkpoint ("relu", "silu", ...)."""
    return activation_name(load_checkpoint(name, -1, "cpu"))
