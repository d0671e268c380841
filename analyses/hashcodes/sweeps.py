"""Sweeps over width, training time and sample size on digits MLPs, and the activation-hash phase chart.

Every sweep returns numpy arrays indexed [width, (epoch | sample size,) seed] with one entry per metric, so the
figures and result.json are built from the same numbers. Training time reuses the width runs: metrics are taken
at the epoch checkpoints of those runs (reference run_training_time_*; after an early stop, the final model).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from analyses.hashcodes.categorize import categorization_suite, knn_accuracy, tie_aware_knn_accuracy
from analyses.hashcodes.codes import activation_codes, pack, redundancy_ratio, region_occupancy
from analyses.hashcodes.config import Config
from analyses.hashcodes.digits import DigitsData, accuracy
from analyses.hashcodes.ensemble import train_ensemble

FINAL_METRICS = ("test_acc", "n_bits", "rr_train", "rr_test", "kmeans_train", "kmeans_test",
                 "kmeans_hungarian_train", "kmeans_hungarian_test", "knn", "knn_tie_aware", "logreg")
REGIMES = ("under-expressive", "critically-expressive", "sufficiently-expressive")


def evaluate_codes(model: torch.nn.Module, data: DigitsData, cfg: Config, metrics: Sequence[str],
                   train_idx: np.ndarray | None = None, occupancy: bool = False) -> dict:
    """Codes of one network on (a subset of) train and on test -> RR, code length and categorisation metrics."""
    X_tr = data.X_train if train_idx is None else data.X_train[torch.as_tensor(train_idx)]
    y_tr = data.y_train if train_idx is None else data.y_train[train_idx]
    c_tr, c_te, keep = activation_codes(model, X_tr, X_test=data.X_test, fit_on=cfg.drop_fit_on)
    out: dict = {"n_bits": int(keep.sum()), "rr_train": redundancy_ratio(c_tr), "rr_test": redundancy_ratio(c_te),
                 "test_acc": accuracy(model, data.X_test, data.y_test)}
    if occupancy:
        out["occupancy_train"] = region_occupancy(c_tr)
        out["occupancy_test"] = region_occupancy(c_te)
    k = min(cfg.k, len(y_tr))
    want = tuple(m for m in metrics if m != "knn")
    if np.unique(y_tr).size < 2:  # a tiny subset with one class: nothing to categorise
        want = tuple(m for m in want if m != "logreg")
    if want:
        out.update(categorization_suite(c_tr, y_tr, c_te, data.y_test, k=k, kmeans_seed=cfg.kmeans_seed,
                                        lr_seed=cfg.lr_seed, lr_max_iter=cfg.lr_max_iter, lr_solver=cfg.lr_solver,
                                        metrics=want))
    if "knn" in metrics:
        out["knn"] = knn_accuracy(pack(c_tr), y_tr, pack(c_te), data.y_test, k=k, algorithm=cfg.knn_algorithm)
        out["knn_tie_aware"] = tie_aware_knn_accuracy(pack(c_tr), y_tr, pack(c_te), data.y_test, k=k)
    if "kmeans" not in metrics:
        out.setdefault("knn_tie_aware", math.nan)
        out.update({m: math.nan for m in ("kmeans_train", "kmeans_test", "kmeans_hungarian_train",
                                          "kmeans_hungarian_test")})
    return out


def _train_kwargs(cfg: Config) -> dict:
    return dict(depth=cfg.depth, batchnorm=cfg.batchnorm, schedule=cfg.schedule, init=cfg.init,
                max_epochs=cfg.max_epochs or None, early_stopping=cfg.early_stopping,
                dtype=getattr(torch, cfg.train_dtype))


def width_sweep(data: DigitsData, cfg: Config, log=None) -> tuple[dict[str, np.ndarray], dict]:
    """Train every (width, seed), metrics at epoch checkpoints and at the end: arrays + occupancy/epoch details."""
    W, S, E = len(cfg.widths), len(cfg.seeds), len(cfg.epoch_checkpoints)
    final = {m: np.full((W, S), np.nan) for m in FINAL_METRICS}
    ep_metrics = ("rr_train", "rr_test", "n_bits", "test_acc", *[m for m in ("knn", "logreg") if m in
                                                                  cfg.epoch_metrics])
    if "kmeans" in cfg.epoch_metrics:
        ep_metrics += ("kmeans_test",)
    per_epoch = {m: np.full((W, E, S), np.nan) for m in ep_metrics}
    details: dict = {"occupancy": {}, "epochs_trained": {}, "stopped_early": {}}
    for wi, width in enumerate(cfg.widths):
        def on_ckpt(epoch: int, ens, wi=wi) -> None:
            ei = cfg.epoch_checkpoints.index(epoch)
            for si in range(ens.size):
                r = evaluate_codes(ens.member(si), data, cfg, cfg.epoch_metrics)
                for m in ep_metrics:
                    per_epoch[m][wi, ei, si] = r[m]

        ens, info = train_ensemble(data, width, cfg.seeds, checkpoints=cfg.epoch_checkpoints,
                                   on_checkpoint=on_ckpt, **_train_kwargs(cfg))
        occ = []
        for si in range(ens.size):
            r = evaluate_codes(ens.member(si), data, cfg, ("kmeans", "knn", "logreg"), occupancy=True)
            for m in FINAL_METRICS:
                final[m][wi, si] = r[m]
            occ.append({"train": r["occupancy_train"], "test": r["occupancy_test"]})
        details["occupancy"][str(width)] = occ
        details["epochs_trained"][str(width)] = info.epochs
        details["stopped_early"][str(width)] = info.stopped_early
        if log:
            log(f"width {width}: RR test {np.nanmean(final['rr_test'][wi]):.3f}, "
                f"9-NN {np.nanmean(final['knn'][wi]):.3f}")
    arrays = {f"width.{m}": v for m, v in final.items()}
    arrays.update({f"epochs.{m}": v for m, v in per_epoch.items()})
    arrays["width.values"] = np.asarray(cfg.widths, dtype=np.int64)
    arrays["epochs.values"] = np.asarray(cfg.epoch_checkpoints, dtype=np.int64)
    return arrays, details


def sample_sweep(data: DigitsData, cfg: Config, log=None) -> dict[str, np.ndarray]:
    """Train on random subsets of each size (tiled to the full training set): arrays [width, size, seed]."""
    n_all = len(data.y_train)
    sizes = [min(n, n_all) for n in cfg.sample_sizes]
    W, N, S = len(cfg.sample_widths), len(sizes), len(cfg.sample_seeds)
    names = ("rr_train", "rr_test", "n_bits", "test_acc", *[m for m in ("knn", "logreg") if m in cfg.sample_metrics])
    if "kmeans" in cfg.sample_metrics:
        names += ("kmeans_test",)
    out = {m: np.full((W, N, S), np.nan) for m in names}
    members = [(ni, si) for ni in range(N) for si in range(S)]
    subsets = [np.sort(np.random.default_rng(cfg.sample_seeds[si]).permutation(n_all)[: sizes[ni]])
               for ni, si in members]
    seeds = [cfg.sample_seeds[si] for _, si in members]
    for wi, width in enumerate(cfg.sample_widths):
        ens, _ = train_ensemble(data, width, seeds, train_idx=subsets, tile_to=n_all, **_train_kwargs(cfg))
        for j, (ni, si) in enumerate(members):
            r = evaluate_codes(ens.member(j), data, cfg, cfg.sample_metrics, train_idx=subsets[j])
            for m in names:
                out[m][wi, ni, si] = r[m]
        if log:
            log(f"sample sweep width {width}: RR test by size {np.round(np.nanmean(out['rr_test'][wi], 1), 3)}")
    arrays = {f"samples.{m}": v for m, v in out.items()}
    arrays["samples.values"] = np.asarray(sizes, dtype=np.int64)
    arrays["samples.widths"] = np.asarray(cfg.sample_widths, dtype=np.int64)
    return arrays


def regimes(rr_train: np.ndarray, rr_sufficient: float, rr_under: float) -> np.ndarray:
    """Phase-chart regime per cell: 0 under- (RR >= rr_under), 2 sufficiently- (RR <= rr_sufficient), else 1."""
    r = np.asarray(rr_train, dtype=np.float64)
    out = np.ones(r.shape, dtype=np.int64)
    out[r >= rr_under] = 0
    out[r <= rr_sufficient] = 2
    out[np.isnan(r)] = -1
    return out


def critical_width(widths: Sequence[int], rr_train_mean: np.ndarray, rr_sufficient: float) -> int | None:
    """Smallest width from which the mean train RR stays <= rr_sufficient (None if never)."""
    ok = np.asarray(rr_train_mean) <= rr_sufficient
    for i in range(len(widths)):
        if ok[i:].all():
            return int(widths[i])
    return None
