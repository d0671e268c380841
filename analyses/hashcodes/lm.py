"""Neural codes of a language model's MLP units over tokens (GELU `blocks.*.mlp.hook_post`, threshold 0).

Two questions, transferred from the digits MLPs: determinism (how many held-out tokens share a code: RR per layer
and over all layers) and categorisation (do the codes at the last token of the probe prompts group by planted
feature, and by the planted answer within a feature: 9-NN Hamming, OvO logistic regression, K-means).
`lm_codes(cfg) -> LMCodes` is the study `run` calls; it is the toolkit's transfer of the paper's questions, not a
study of the paper.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from analyses.hashcodes.categorize import categorization_suite, knn_accuracy
from analyses.hashcodes.codes import binarize, drop_constant, pack, redundancy_ratio, region_occupancy
from analyses.hashcodes.config import Config
from interp.errors import InterpError


def _capture(model, tokens: torch.Tensor, hooks: str | Sequence[str]) -> dict[str, torch.Tensor]:
    from interp.capture import capture

    return capture(model, tokens, hooks=hooks, batch_size=64)


def token_codes(model, blocks: torch.Tensor, hooks: str | Sequence[str] = "blocks.*.mlp.hook_post",
                threshold: float = 0.0) -> dict[str, np.ndarray]:
    """{hook: uint8 codes `[n_tokens, d_mlp]`} for every token of `blocks` `[n_blocks, ctx]`."""
    acts = _capture(model, blocks, hooks)
    return {h: binarize(a.reshape(-1, a.shape[-1]), threshold) for h, a in acts.items()}


def last_token_codes(model, prompts: Sequence[Sequence[int]], hooks: str | Sequence[str] = "blocks.*.mlp.hook_post",
                     threshold: float = 0.0, pad_id: int = 0, batch_size: int = 64) -> np.ndarray:
    """Codes at the last token of each prompt, all hooks concatenated: uint8 `[n_prompts, n_units]`.

    Prompts are right-padded into one batch; with causal attention the padding cannot change earlier positions.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise InterpError("last_token_codes needs non-empty prompts", hint="drop empty prompts")
    order = np.argsort([len(p) for p in prompts], kind="stable")  # batch similar lengths: little padding
    out: np.ndarray | None = None
    for s in range(0, len(order), batch_size):
        chunk = order[s: s + batch_size]
        T = max(len(prompts[i]) for i in chunk)
        toks = torch.full((len(chunk), T), pad_id, dtype=torch.long)
        for r, i in enumerate(chunk):
            toks[r, : len(prompts[i])] = torch.as_tensor(list(prompts[i]))
        last = torch.as_tensor([len(prompts[i]) - 1 for i in chunk])
        acts = _capture(model, toks, hooks)
        rows = torch.arange(len(chunk))
        codes = np.concatenate([binarize(a[rows, last], threshold) for a in acts.values()], axis=1)
        if out is None:
            out = np.empty((len(prompts), codes.shape[1]), dtype=np.uint8)
        out[chunk] = codes
    return out


def token_determinism(codes: dict[str, np.ndarray]) -> dict:
    """RR and code length per hook and over all hooks (constant units dropped), plus the all-hook occupancy."""
    out: dict = {"per_hook": {}}
    for h, c in codes.items():
        c2, _, keep = drop_constant(c)
        out["per_hook"][h] = {"rr": redundancy_ratio(c2), "n_bits": int(keep.sum())}
    allc, _, keep = drop_constant(np.concatenate(list(codes.values()), axis=1))
    occ = region_occupancy(allc)
    out.update({"rr_all": redundancy_ratio(allc), "n_bits_all": int(keep.sum()), "n_tokens": int(allc.shape[0]),
                "max_occupancy": max(occ), "occupancy": occ})
    return out


def _split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    counts = np.unique(labels, return_counts=True)[1]
    strat = labels if counts.min() >= 2 else None
    return train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=strat)


def probe_categorization(codes: np.ndarray, features: np.ndarray, answers: np.ndarray, k: int = 9,
                         test_fraction: float = 0.3, seed: int = 0, lr_max_iter: int = 100,
                         lr_solver: str = "auto") -> dict:
    """Categorisation of planted features from last-token codes: which feature, and which answer per feature."""
    tr, te = _split(features, test_fraction, seed)
    c_tr, c_te, keep = drop_constant(codes[tr], codes[te], fit_on="union")
    res = {"n_probes": int(len(features)), "n_bits": int(keep.sum()),
           "rr_train": redundancy_ratio(c_tr), "rr_test": redundancy_ratio(c_te)}
    suite = categorization_suite(c_tr, features[tr], c_te, features[te], k=min(k, len(tr)), lr_max_iter=lr_max_iter,
                                 lr_solver=lr_solver)
    res.update({f"feature_{m}": v for m, v in suite.items()})
    per: dict = {}
    for f in np.unique(features):
        sel = np.flatnonzero(features == f)
        if np.unique(answers[sel]).size < 2 or len(sel) < 10:
            continue
        a_tr, a_te = _split(answers[sel], test_fraction, seed)
        ct, ce, _ = drop_constant(codes[sel[a_tr]], codes[sel[a_te]])
        ya, yb = answers[sel[a_tr]], answers[sel[a_te]]
        m = categorization_suite(ct, ya, ce, yb, k=min(k, len(a_tr)), metrics=("knn", "logreg"),
                                 lr_max_iter=lr_max_iter, lr_solver=lr_solver)
        majority = float(np.max(np.unique(yb, return_counts=True)[1]) / len(yb))
        per[str(f)] = {"n": int(len(sel)), "answers": sorted(map(str, np.unique(answers[sel]))),
                       "knn": m["knn"], "logreg": m["logreg"], "majority_baseline": majority}
    res["answer_by_feature"] = per
    return res


def _load_probes(path, per_feature: int, seed: int) -> list[dict]:
    recs = [json.loads(line) for line in open(path) if line.strip()]
    rng = np.random.default_rng(seed)
    out = []
    for f in sorted({r["feature"] for r in recs}):
        group = [r for r in recs if r["feature"] == f]
        pick = rng.permutation(len(group))[:per_feature]
        out.extend(group[i] for i in sorted(pick))
    return out


@dataclass
class LMCodes:
    """The language-model study (beyond the paper: §4.1's determinism and categorisation questions asked of an LM's
    MLP codes). `details` is {"status": "ok", model, step, hooks, threshold, tokens (`token_determinism`), probes
    (`probe_categorization` + per-layer 9-NN)} or {"status": "skipped", "note": why}; `arrays` holds the per-layer
    profiles `lm.rr_per_layer`, `lm.n_bits_per_layer`, `lm.feature_knn_per_layer` (empty when skipped)."""

    details: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """'ok' or 'skipped'."""
        return self.details["status"]

    def contribute(self, arrays: dict[str, np.ndarray], details: dict) -> None:
        """The `lm.*` arrays and `details["lm"]`."""
        arrays.update(self.arrays)
        details["lm"] = self.details

    def summary(self) -> dict[str, Any]:
        """The status and, when the study ran, the token RR and the which-feature 9-NN and logistic regression."""
        out: dict[str, Any] = {"lm_status": self.details.get("status")}
        if self.status == "ok":
            out["lm_token_rr"] = self.details["tokens"]["rr_all"]
            out["lm_feature_knn"] = self.details["probes"]["feature_knn"]
            out["lm_feature_logreg"] = self.details["probes"]["feature_logreg"]
        return out


def _skipped(note: str) -> LMCodes:
    return LMCodes({"status": "skipped", "note": note})


def lm_codes(cfg: Config, log: Callable[[str], None] | None = None) -> LMCodes:
    """The LM study of `run`: token determinism and probe categorisation of `cfg.model`'s MLP codes; status
    'skipped' with a note if the study is off or the model is absent."""
    from interp.models import checkpoints, data_dir, embedded_names, load, load_tokenizer

    if not cfg.lm:
        return _skipped("disabled (lm=False)")
    if cfg.model not in embedded_names():
        from pathlib import Path

        if not (Path(cfg.model) / "config.json").is_file():
            note = (f"model '{cfg.model}' is not available (embedded suites: {', '.join(embedded_names()) or 'none'});"
                    " the LM part is skipped — it runs once data/models/<suite> lands or with model=<HF folder>")
            if log:
                log(note)
            return _skipped(note)
    step = None
    if cfg.model in embedded_names():
        steps = checkpoints(cfg.model)
        step = steps[-1] if cfg.step == -1 else cfg.step
    model = load(cfg.model, step=step)
    tok = load_tokenizer(cfg.model)
    from interp.sources import token_blocks

    blocks = token_blocks(cfg.data, tok, ctx=cfg.lm_ctx, n_tokens=cfg.lm_tokens)
    codes = token_codes(model, blocks, cfg.lm_hooks, cfg.lm_threshold)
    det = token_determinism(codes)
    details: dict = {"status": "ok", "model": cfg.model, "step": step, "hooks": list(codes),
                     "threshold": cfg.lm_threshold, "tokens": det}
    arrays = {"lm.rr_per_layer": np.asarray([det["per_hook"][h]["rr"] for h in codes]),
              "lm.n_bits_per_layer": np.asarray([det["per_hook"][h]["n_bits"] for h in codes])}
    probes = _load_probes(data_dir() / "corpus" / "probes.jsonl", cfg.lm_probes_per_feature, seed=0)
    prompts = [tok.encode(p["prompt"], add_special_tokens=False) for p in probes]
    pc = last_token_codes(model, prompts, cfg.lm_hooks, cfg.lm_threshold)
    feats = np.asarray([p["feature"] for p in probes])
    answers = np.asarray([p["answer"] for p in probes])
    cat = probe_categorization(pc, feats, answers, k=cfg.k, test_fraction=cfg.lm_test_fraction,
                               lr_max_iter=cfg.lr_max_iter, lr_solver=cfg.lr_solver)
    # per layer: which-feature 9-NN from one layer's units only
    d = pc.shape[1] // len(codes)
    tr, te = _split(feats, cfg.lm_test_fraction, 0)
    per_layer = []
    for li in range(len(codes)):
        ct, ce, _ = drop_constant(pc[tr, li * d:(li + 1) * d], pc[te, li * d:(li + 1) * d])
        per_layer.append(knn_accuracy(pack(ct), feats[tr], pack(ce), feats[te], k=cfg.k))
    cat["feature_knn_per_layer"] = per_layer
    arrays["lm.feature_knn_per_layer"] = np.asarray(per_layer)
    details["probes"] = cat
    if log:
        log(f"LM {cfg.model}: token RR {det['rr_all']:.3f}, feature 9-NN {cat['feature_knn']:.3f}")
    return LMCodes(details, arrays)
