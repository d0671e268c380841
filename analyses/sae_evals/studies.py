"""`run(Config)`: the standard evals of every SAE (and transcoder) of a model, then what they say in words.

An SAE reads and replaces one hook; a transcoder (`interp.transcoders`) reads its input hook (metadata.hook_name)
and replaces its OUTPUT hook (metadata.hook_name_out) by ŷ = decode(encode(x)) + x W_skipᵀ. Every number below is
about the hook that is replaced (the target: an SAE's own hook, a transcoder's output hook).

1. `reconstruction`: one forward pass per token batch captures every hook read or replaced; each SAE encodes its
   input rows and predicts its target rows: FVU and explained variance against the target's activations (and its
   variance), L0, dead and dense latents, density (streaming sums, `method.ReconSums`).
2. `loss_recovered`: per batch, the clean forward, the forward with each target hook zero- and mean-ablated (once
   per hook) and with each SAE spliced in (`interp.intervene`'s hook functions): CE and KL loss recovered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from interp import progress
from interp.analysis import Finding, Provenance
from interp.errors import ConfigError

from .config import Config
from .method import LossSums, ReconSums, density_histogram, kl_recovered, loss_recovered
from .result import SAEEvalsResult


@dataclass
class Inputs:
    """The model, the SAEs by name (with their index entries and (input hook, target hook)), and the token blocks
    [n_blocks, ctx]."""

    model: torch.nn.Module
    saes: dict[str, object]
    entries: dict[str, dict]
    blocks: torch.Tensor
    source: str
    hooks: dict[str, tuple[str, str]] = field(default_factory=dict)

    def targets(self) -> list[str]:
        """The hooks some SAE replaces (each ablated once), sorted."""
        return sorted({h_out for _, h_out in self.hooks.values()})


def sae_hooks(sae: object, entry: dict) -> tuple[str, str]:
    """(input hook, replaced hook): a transcoder's two hooks (the entry's, else its metadata), an SAE's hook twice."""
    from interp.transcoders import is_transcoder, transcoder_hooks

    if is_transcoder(sae):
        return transcoder_hooks(sae, entry.get("hook"), entry.get("hook_out"))
    return entry["hook"], entry["hook"]


@torch.no_grad()
def encode_predict(sae: object, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(f, prediction of the target) for input rows x [N, d_in]: decode(f) for an SAE, decode(f) + x W_skipᵀ for a
    transcoder (`interp.transcoders.encode_predict`)."""
    from interp.saes import flat_rows
    from interp.transcoders import encode_predict as transcode
    from interp.transcoders import is_transcoder

    if is_transcoder(sae):
        return transcode(sae, x)
    with flat_rows(sae):
        f = sae.encode(x.to(sae.W_dec.dtype))
        return f, sae.decode(f)


def load_inputs(cfg: Config) -> Inputs:
    from interp.models import data_dir, load
    from interp.saes import load_sae, sae_entries
    from interp.sources import describe_source, token_blocks

    folder = cfg.saes or str(Path(data_dir()) / "saes" / Path(cfg.model).name)
    entries = {e["name"]: e for e in sae_entries(folder)}
    if cfg.names:
        missing = [n for n in cfg.names if n not in entries]
        if missing:
            raise ConfigError(f"no SAE named {missing[0]!r} in {folder}", hint=f"choose from {', '.join(entries)}")
        entries = {n: entries[n] for n in cfg.names}
    model = load(cfg.model, step=cfg.load_step, device=cfg.device)
    saes = {n: load_sae(e["abs_path"], device=cfg.device) for n, e in entries.items()}
    hooks = {n: sae_hooks(saes[n], e) for n, e in entries.items()}
    if cfg.cache:
        from interp.cache import open_cache

        reader = open_cache(cfg.cache)
        ctx = int(reader.manifest.identity.get("ctx", 0))
        if reader.manifest.layout.get("rows_per_block") != ctx:
            raise ConfigError(f"cache {cfg.cache} holds selected positions, not whole sequences",
                              hint="extract with --positions all, or evaluate on a token source (data=...)")
        n = min(reader.n_rows, cfg.n_tokens) // ctx * ctx
        blocks = reader.tokens[:n, 0].reshape(-1, ctx).long()
        source = f"cache:{cfg.cache}"
    else:
        blocks = token_blocks(cfg.data, model.tokenizer, ctx=cfg.ctx, n_tokens=cfg.n_tokens)
        source = describe_source(cfg.data)
    return Inputs(model, saes, entries, blocks, source, hooks)


def reconstruction(cfg: Config, inp: Inputs) -> tuple[dict[str, ReconSums], dict[str, torch.Tensor]]:
    """Study 1: every SAE's reconstruction sums (of its target hook), and each target hook's mean activation (for
    mean ablation), from one forward per batch that captures every input and target hook."""
    from interp.capture import Capturer

    hooks = sorted({h for pair in inp.hooks.values() for h in pair})
    targets = inp.targets()
    capturer = Capturer(inp.model, hooks)
    sums = {n: ReconSums(int(s.cfg.d_sae)) for n, s in inp.saes.items()}
    hook_sum: dict[str, torch.Tensor] = {}
    count = 0
    progress.stage("sae-evals", f"reconstruction of {len(sums)} SAEs on {inp.blocks.numel()} tokens")
    for start in progress.bar(range(0, len(inp.blocks), cfg.batch_size), "batches", unit="batch"):
        acts = capturer(inp.blocks[start:start + cfg.batch_size].to(cfg.device))
        count += acts[hooks[0]].shape[0] * acts[hooks[0]].shape[1]
        for h in targets:
            hook_sum[h] = hook_sum.get(h, 0) + acts[h].double().sum((0, 1))
        with torch.no_grad():
            for name, sae in inp.saes.items():
                h_in, h_out = inp.hooks[name]
                x = acts[h_in].reshape(-1, int(sae.cfg.d_in)).float()
                y = acts[h_out].reshape(x.shape[0], -1).float()  # = x for an SAE
                f, pred = encode_predict(sae, x)
                sums[name].update(y.cpu(), pred.float().cpu(), f.float().cpu())
    return sums, {h: (s / count) for h, s in hook_sum.items()}


def splice_losses(cfg: Config, inp: Inputs, means: dict[str, torch.Tensor]) -> dict[str, dict[str, LossSums]]:
    """Study 2: CE and KL against the clean forward with each SAE spliced in (a transcoder: its input recorded, its
    output hook replaced by ŷ) and each target hook zero/mean-ablated."""
    from interp.intervene import edit_hooks, model_logits, next_token_stats, sae_edit_fn
    from interp.transcoders import is_transcoder, transcoder_edit_fns

    hooks = inp.targets()
    out = {**{n: {"sae": LossSums()} for n in inp.saes}, **{h: {"zero": LossSums(), "mean": LossSums()}
                                                           for h in hooks}}
    clean_sum = LossSums()
    progress.stage("sae-evals", f"splicing {len(inp.saes)} SAEs and ablating {len(hooks)} hooks")
    for start in progress.bar(range(0, len(inp.blocks), cfg.batch_size), "batches", unit="batch"):
        toks = inp.blocks[start:start + cfg.batch_size].to(cfg.device)
        n = toks.shape[0] * (toks.shape[1] - 1)
        with torch.no_grad():
            clean = model_logits(inp.model, toks)
            ce, _, _ = next_token_stats(clean, clean, toks)
            clean_sum.update(ce, 0.0, n)
            runs = [(out[n_]["sae"], transcoder_edit_fns(s, hook=inp.hooks[n_][0], hook_out=inp.hooks[n_][1])
                     if is_transcoder(s) else {inp.hooks[n_][0]: sae_edit_fn(s)}) for n_, s in inp.saes.items()]
            for h in hooks:
                mean = means[h]
                runs.append((out[h]["zero"], {h: torch.zeros_like}))
                runs.append((out[h]["mean"], {h: lambda x, m=mean: m.to(x.dtype).expand_as(x).clone()}))
            for sums, edits in runs:
                with edit_hooks(inp.model, edits):
                    logits = model_logits(inp.model, toks)
                ce_i, _, kl_i = next_token_stats(logits, clean, toks)
                sums.update(ce_i, kl_i, n)
    out["clean"] = {"clean": clean_sum}
    return out


def findings(rows: list[dict]) -> list[Finding]:
    """What the numbers say, against the bars SAE papers and SAELens' evals use for a usable SAE (a transcoder is
    held to the same bars, its numbers being about the output hook it replaces)."""
    by_arch: dict[tuple[str, str, str], list[dict]] = {}  # one sweep = one pair of hooks and one architecture
    for r in rows:
        by_arch.setdefault((r["hook"], r["hook_out"], r["architecture"] or r["kind"]), []).append(r)
    kinds = sorted({"SAE" if r["kind"] == "sae" else "transcoder" for r in rows})
    what, whats = " and ".join(kinds), " and ".join(k + "s" for k in kinds)  # "SAE", "SAEs and transcoders"
    any_of = " or ".join(kinds)
    widening = [all(np.diff([r["fvu"] for r in sorted(rs, key=lambda r: r["d_sae"])]) < 0)
                for rs in by_arch.values() if len(rs) > 1]
    ce = [r["ce_loss_recovered_zero"] for r in rows if r.get("ce_loss_recovered_zero") is not None]
    return [
        Finding.compare(f"Every {what} explains most of the variance of the activations it replaces (smallest "
                        "explained variance)",
                        min(r["explained_variance"] for r in rows), ">=", 0.9, key="min_explained_variance",
                        paper="usable SAEs explain ≥ 0.9 (SAELens evals; Gao et al. 2024 report FVU ≤ 0.1)"),
        Finding.compare(f"Splicing any {any_of} into the forward keeps the model's loss (smallest CE loss recovered "
                        "against zero ablation)", min(ce) if ce else None, ">=", 0.9,
                        key="min_ce_loss_recovered_zero", paper="≥ 0.9 for usable SAEs (Bricken et al. 2023)",
                        why_not_applicable="the splice study was not run (loss=False)"),
        Finding.compare(f"Few latents are dead (largest dead fraction over the {whats})",
                        max(r["dead_fraction"] for r in rows), "<=", 0.1, key="max_dead_fraction",
                        paper="dead latents ≤ 10 % with TopK/JumpReLU training (Gao et al. 2024)",
                        detail=f"Dead = never fired in the {rows[0]['n_tokens']} tokens evaluated; a wide SAE needs "
                               "many tokens before this is meaningful."),
        Finding.compare(f"Wider {whats} of one architecture and hook reconstruct better (FVU falls with width)",
                        float(all(widening)) if widening else None, ">=", 1.0, key="fvu_falls_with_width",
                        paper="FVU falls as a power law of width (Gao et al. 2024, Fig. 1)",
                        why_not_applicable="no architecture has two widths here"),
    ]


def run(config: Config | None = None) -> SAEEvalsResult:
    """The standard evals of every SAE and transcoder in `config.saes` on `config.model`; each row names its kind
    ("sae" or "transcoder"), the hook it reads (`hook`) and the hook it replaces (`hook_out`, = hook for an SAE)."""
    from interp.transcoders import is_transcoder

    cfg = (config or Config()).validate()
    torch.manual_seed(cfg.seed)
    progress.stage("sae-evals", f"loading {cfg.model} and its SAEs")
    inp = load_inputs(cfg)
    sums, means = reconstruction(cfg, inp)
    losses = splice_losses(cfg, inp, means) if cfg.loss else {}
    rows, arrays = [], {}
    for name, s in sums.items():
        e, (h_in, h_out) = inp.entries[name], inp.hooks[name]
        sae_cfg = inp.saes[name].cfg
        r = s.result(cfg.dense_density)
        arrays[f"density.{name}"] = r.pop("density")
        arrays[f"mean_activation.{name}"] = r.pop("mean_activation")
        counts, edges, dead = density_histogram(arrays[f"density.{name}"], cfg.density_bins)
        arrays[f"density_hist.{name}"] = counts
        arrays["density_edges"] = edges
        row = {"name": name, "kind": "transcoder" if is_transcoder(inp.saes[name]) else "sae", "hook": h_in,
               "hook_out": h_out, "architecture": e.get("architecture", "") or sae_cfg.architecture(),
               "d_sae": int(sae_cfg.d_sae), "d_in": int(sae_cfg.d_in), "d_out": int(getattr(sae_cfg, "d_out", None)
                                                                                  or sae_cfg.d_in), **r}
        if losses:
            clean = losses["clean"]["clean"].mean_ce
            sae, zero, mean = losses[name]["sae"], losses[h_out]["zero"], losses[h_out]["mean"]
            row.update({"ce_clean": clean, "ce_sae": sae.mean_ce, "ce_zero": zero.mean_ce, "ce_mean": mean.mean_ce,
                        "kl_sae": sae.mean_kl, "kl_zero": zero.mean_kl, "kl_mean": mean.mean_kl,
                        "ce_loss_recovered_zero": loss_recovered(clean, sae.mean_ce, zero.mean_ce),
                        "ce_loss_recovered_mean": loss_recovered(clean, sae.mean_ce, mean.mean_ce),
                        "kl_recovered_zero": kl_recovered(sae.mean_kl, zero.mean_kl),
                        "kl_recovered_mean": kl_recovered(sae.mean_kl, mean.mean_kl)})
        rows.append(row)
    found = findings(rows)
    summary = {"n_saes": len(rows), "n_tokens": int(inp.blocks.numel()),
               "min_explained_variance": min(r["explained_variance"] for r in rows),
               "max_dead_fraction": max(r["dead_fraction"] for r in rows),
               "fvu_falls_with_width": found[3].measured,
               **({"min_ce_loss_recovered_zero": min(r["ce_loss_recovered_zero"] for r in rows),
                   "ce_clean": rows[0]["ce_clean"]} if losses else {})}
    prov = Provenance.collect(model=cfg.model, step=cfg.step, data=inp.source, n_tokens=int(inp.blocks.numel()),
                              hooks=sorted({h for r in rows for h in (r["hook"], r["hook_out"])}), cache=cfg.cache,
                              saes=cfg.saes or "data/saes (shipped)")
    return SAEEvalsResult(summary=summary, details={"saes": rows}, arrays=arrays, config=cfg.to_dict(),
                          provenance=prov.to_dict(), findings=found)
