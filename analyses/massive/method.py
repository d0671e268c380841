"""Massive-activation statistics and detection on layer outputs (Sun et al. 2024 §2; Gallego-Feliciano et al. Eqs. 4–8).

Per layer ℓ and input x, on h = blocks.ℓ.hook_resid_post (the decoder layer's post-residual output) [S, d]:
  h^max = max |h| (Eq. 5) with its (position, dim), top-2/top-3 likewise, h^median = median |h| over S·d (Eq. 4),
  r = h^max / h^median (Eq. 6). Over inputs: ratio of means  mean_x h^max / mean_x h^median  (the locuslab plot,
  which averages top-k and median separately) and mean of ratios  mean_x r  (the paper leaves the choice open).
Detection: Sun et al. (|a| > 100 and |a| ≥ 1000·median) and relative criteria for small models (ratio, MAD,
few-dims cluster, persistence across layers; after p-e-w/heretic PR #154).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from interp.errors import ConfigError


def layer_outputs(model: torch.nn.Module, tokens: torch.Tensor, hook: str = "resid_post",
                  batch_size: int | None = 16) -> torch.Tensor:
    """Every layer's output `[L, B, S, d]` in float64 (TL hook blocks.{ℓ}.hook_{hook})."""
    from interp.capture import capture, layer_of

    if tokens.ndim != 2:
        raise ConfigError(f"tokens must be [batch, pos], got shape {tuple(tokens.shape)}", hint="pass token blocks")
    acts = capture(model, tokens, hooks=f"blocks.*.hook_{hook}", dtype=torch.float64, batch_size=batch_size)
    names = sorted(acts, key=lambda n: layer_of(n) or 0)
    return torch.stack([acts[n] for n in names])


def median_last(a: torch.Tensor) -> torch.Tensor:
    """Median over the last dim in float64, averaging the two middle values like numpy (torch.median takes the
    lower one): [...]."""
    a = a.to(torch.float64)
    n = a.shape[-1]
    lo = torch.kthvalue(a, (n + 1) // 2, dim=-1).values
    if n % 2:
        return lo
    hi = torch.kthvalue(a, n // 2 + 1, dim=-1).values
    return 0.5 * (lo + hi)


def median_abs(h: torch.Tensor) -> torch.Tensor:
    """Median of |h| over the last two dims (S·d entries), numpy's convention: [...]."""
    return median_last(h.abs().flatten(-2))


def massive_stats(h: torch.Tensor, k: int = 3) -> dict[str, np.ndarray]:
    """Top-k |h| with (position, dim), signed value, median |h| and top1/median for h `[..., S, d]`.

    Returns arrays with the leading dims of h: top [..., k], top_value (signed), top_pos, top_dim, median [...],
    ratio [...] (Eq. 6 per input).
    """
    if h.ndim < 2:
        raise ConfigError("massive_stats needs h of shape [..., S, d]", hint="pass a hidden state, not a vector")
    S, d = h.shape[-2:]
    if not 1 <= k <= S * d:
        raise ConfigError(f"top_k={k} is not in [1, {S * d}] (positions × d_model of one input)",
                          hint=f"pass top_k between 1 and {S * d} (the paper uses 3)")
    flat = h.to(torch.float64).flatten(-2)
    vals, idx = flat.abs().topk(k, dim=-1)
    med = median_abs(h)
    return {
        "top": vals.numpy(), "top_value": torch.gather(flat, -1, idx).numpy(),
        "top_pos": (idx // d).numpy(), "top_dim": (idx % d).numpy(),
        "median": med.numpy(), "ratio": (vals[..., 0] / med).numpy(),
    }


def aggregate_ratio(top1: np.ndarray, median: np.ndarray, axis: int = -1) -> dict[str, np.ndarray]:
    """Over inputs (axis): ratio of means mean(top1)/mean(median), mean of ratios mean(top1/median), and its CV."""
    r = top1 / median
    return {"ratio_of_means": top1.mean(axis) / median.mean(axis), "mean_of_ratios": r.mean(axis),
            "ratio_cv": r.std(axis, ddof=1) / r.mean(axis) if r.shape[axis] > 1 else np.zeros_like(r.mean(axis))}


def is_massive(a: float | np.ndarray, h: torch.Tensor | np.ndarray | None = None, *, median: float | None = None,
               abs_thresh: float = 100.0, ratio_thresh: float = 1000.0) -> bool | np.ndarray:
    """Sun et al. (Eq. 2): |a| > abs_thresh and |a| ≥ ratio_thresh · median|h| (give h or its median)."""
    if median is None:
        if h is None:
            raise ConfigError("is_massive needs the hidden state h or its median", hint="pass h=... or median=...")
        median = float(median_abs(torch.as_tensor(np.asarray(h)).reshape(1, -1)))
    a = np.abs(np.asarray(a, dtype=np.float64))
    out = (a > abs_thresh) & (a >= ratio_thresh * median)
    return bool(out) if out.ndim == 0 else out


@dataclass
class DetectionCriteria:
    """Thresholds: Sun et al. absolute/ratio, plus the relative small-model criteria."""

    mode: str = "relative"  # "sun" | "relative" | "either"
    abs_thresh: float = 100.0
    ratio_thresh: float = 1000.0
    rel_ratio: float = 20.0  # |a| / median|h| (a Gaussian hidden state gives ≈ 5–7)
    mad_thresh: float = 20.0  # |a − median h| / MAD(h), signed h (Gaussian max ≈ 7)
    max_cluster: int = 3  # the dim must be among the top-`max_cluster` dims of its (layer, input)
    persistence: float = 0.25  # the dim must be flagged in ≥ this fraction of layers
    candidates: int = 16  # top entries per (layer, input) examined


def _candidates(h: torch.Tensor, c: DetectionCriteria) -> dict[str, torch.Tensor]:
    """Top-|h| candidates of one input's layer outputs h `[L, S, d]` with their scores and flags, each `[L, k]`."""
    L, S, d = h.shape
    flat = h.to(torch.float64).flatten(-2)  # [L, S·d]
    med_abs = median_abs(h)  # [L]
    med_signed = median_last(flat)  # [L]
    mad = median_last((flat - med_signed[..., None]).abs()).clamp_min(1e-300)
    k = min(c.candidates, S * d)
    vals, idx = flat.abs().topk(k, dim=-1)  # [L, k]
    signed = torch.gather(flat, -1, idx)
    dim = idx % d
    ratio = vals / med_abs[..., None]
    mad_score = (signed - med_signed[..., None]).abs() / mad[..., None]
    rel = (ratio >= c.rel_ratio) & (mad_score >= c.mad_thresh)
    cluster = torch.zeros_like(rel)  # few-dims cluster: rank dims by their largest candidate entry per layer
    for li in range(L):
        seen: list[int] = []
        for j in range(k):
            dj = int(dim[li, j])
            if dj not in seen:
                seen.append(dj)
            cluster[li, j] = seen.index(dj) < c.max_cluster
    return {"vals": vals, "signed": signed, "pos": idx // d, "dim": dim, "ratio": ratio, "mad_score": mad_score,
            "sun": (vals > c.abs_thresh) & (ratio >= c.ratio_thresh), "rel": rel & cluster}


def detect_massive(hs: torch.Tensor, tokens: torch.Tensor | None = None, tokenizer=None,
                   criteria: DetectionCriteria | None = None,
                   lengths: torch.Tensor | list[int] | None = None) -> dict:
    """Massive activations in layer outputs hs `[L, B, S, d]` -> rows (layer, input, position, token, dim, value).

    lengths: real tokens per input (right padding); medians, MAD and candidates then use positions < lengths[b] only.
    Returns {"rows": [...], "dims": sorted massive dims, "dims_by_layer": {ℓ: dims}, "criteria": {...}}.
    """
    c = criteria or DetectionCriteria()
    if c.mode not in ("sun", "relative", "either"):
        raise ConfigError(f"unknown detection mode {c.mode!r}", hint="use 'sun', 'relative' or 'either'")
    if hs.ndim != 4:
        raise ConfigError(f"hs must be [layers, batch, pos, d], got {tuple(hs.shape)}", hint="use layer_outputs()")
    L, B, S, d = hs.shape
    lens = [S] * B if lengths is None else [int(n) for n in lengths]
    if len(lens) != B or not all(1 <= n <= S for n in lens):
        raise ConfigError(f"lengths {lens} must give 1..{S} real positions for each of {B} inputs",
                          hint="pass one length per input, counting its unpadded tokens")
    cand = [_candidates(hs[:, b, :n], c) for b, n in enumerate(lens)]
    layers_with: dict[int, set[int]] = {}
    for cb in cand:
        for li, j in cb["rel"].nonzero().tolist():
            layers_with.setdefault(int(cb["dim"][li, j]), set()).add(li)
    need = max(1, math.ceil(c.persistence * L))
    persistent = torch.tensor(sorted(dd for dd, ls in layers_with.items() if len(ls) >= need), dtype=torch.long)
    found = []
    for b, cb in enumerate(cand):
        rel_p = cb["rel"] & torch.isin(cb["dim"], persistent)
        flag = {"sun": cb["sun"], "relative": rel_p, "either": cb["sun"] | rel_p}[c.mode]
        for li, j in flag.nonzero().tolist():
            p = int(cb["pos"][li, j])
            tok_id = int(tokens[b, p]) if tokens is not None else None
            found.append(((li, b, j), {
                "layer": li, "input": b, "position": p, "token_id": tok_id,
                "token": tokenizer.decode([tok_id]) if tokenizer is not None and tok_id is not None else None,
                "dim": int(cb["dim"][li, j]), "value": float(cb["signed"][li, j]), "ratio": float(cb["ratio"][li, j]),
                "mad_score": float(cb["mad_score"][li, j]), "sun": bool(cb["sun"][li, j]),
                "relative": bool(rel_p[li, j]),
            }))
    rows = [r for _, r in sorted(found, key=lambda t: t[0])]
    dims_by_layer: dict[int, list[int]] = {}
    for r in rows:
        dims_by_layer.setdefault(r["layer"], [])
        if r["dim"] not in dims_by_layer[r["layer"]]:
            dims_by_layer[r["layer"]].append(r["dim"])
    return {"rows": rows, "dims": sorted({r["dim"] for r in rows}),
            "dims_by_layer": {li: sorted(v) for li, v in sorted(dims_by_layer.items())},
            "criteria": {k_: getattr(c, k_) for k_ in c.__dataclass_fields__}}


def detect_massive_dims(model: torch.nn.Module, prompts: torch.Tensor | list[str], tokenizer=None,
                        criteria: DetectionCriteria | None = None) -> list[int]:
    """The massive dims of a model on prompts (token ids [B, S] or strings; union over layers; heretic-style).

    String prompts are right-padded into one batch; the statistics use each prompt's own tokens only.
    """
    lengths = None
    if isinstance(prompts, (list, tuple)):
        if not hasattr(model, "to_tokens") or getattr(model, "tokenizer", None) is None:
            raise ConfigError("string prompts need a transformer-lens model with a tokenizer",
                              hint="pass token ids [batch, pos] instead")
        lengths = [model.to_tokens(p, prepend_bos=False).shape[1] for p in prompts]
        prompts = model.to_tokens(list(prompts), prepend_bos=False, padding_side="right")
        tokenizer = tokenizer or model.tokenizer
    return detect_massive(layer_outputs(model, prompts), prompts, tokenizer, criteria, lengths)["dims"]
