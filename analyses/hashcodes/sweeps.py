"""The paper's digits studies and its phase chart, each a function returning a small dataclass.

- `width_sweep` -> `WidthSweep`: §4.1 (model capacity) and §4.2 (training time), the metrics at the epoch
  checkpoints of the same runs (reference run_training_time_*; after an early stop, the final model).
- `sample_sweep` -> `SampleSweep`: §4.3 (sample size).
- `phase_chart` -> `PhaseChart`: the activation-hash phase chart (spec §1.7), regimes read off the train RR.

Every sweep holds numpy arrays indexed [width, (epoch | sample size,) seed] with one entry per metric, and
`contribute(arrays, details)` writes them under the names the figures and result.json read, so both are built
from the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


Log = Callable[[str], None] | None


@dataclass
class WidthSweep:
    """§4.1 (model capacity) and §4.2 (training time): every (width, seed) network trained once, its codes measured
    at the end (`final[metric]`, [width, seed]) and at the epoch checkpoints of the same run (`per_epoch[metric]`,
    [width, epoch, seed]), with the per-width region occupancy and how long each seed trained."""

    widths: list[int]
    epochs: list[int]  # the checkpoints of §4.2
    final: dict[str, np.ndarray]
    per_epoch: dict[str, np.ndarray]
    occupancy: dict[str, list[dict]]  # str(width) -> per seed {"train": sizes, "test": sizes}
    epochs_trained: dict[str, list[int]]  # str(width) -> per seed
    stopped_early: dict[str, list[bool]]  # str(width) -> per seed

    def seed_mean(self, metric: str) -> np.ndarray:
        """The per-width mean over seeds of a final metric, [width] (NaN where no seed has a value)."""
        return np.nanmean(self.final[metric], axis=1)

    def contribute(self, arrays: dict[str, np.ndarray], details: dict) -> None:
        """`width.*` ([width, seed]) and `epochs.*` ([width, epoch, seed]) arrays; occupancy and training details."""
        arrays.update({f"width.{m}": v for m, v in self.final.items()})
        arrays.update({f"epochs.{m}": v for m, v in self.per_epoch.items()})
        arrays["width.values"] = np.asarray(self.widths, dtype=np.int64)
        arrays["epochs.values"] = np.asarray(self.epochs, dtype=np.int64)
        details.update(occupancy=self.occupancy, epochs_trained=self.epochs_trained,
                       stopped_early=self.stopped_early)

    def table(self) -> list[dict]:
        """One row per width: the seed means of the final metrics and the seed spread of RR and categorisation."""
        means = {k: self.seed_mean(k) for k in ("rr_train", "rr_test", "knn", "logreg", "kmeans_test", "test_acc")}
        return [{"width": w, **{k: float(means[k][i]) for k in means},
                 **{f"{k}_std": float(np.nanstd(self.final[k][i])) for k in ("rr_train", "rr_test", "knn", "logreg")}}
                for i, w in enumerate(self.widths)]


@dataclass
class SampleSweep:
    """§4.3 (sample size): networks trained on random subsets of each size (tiled to the full training set),
    `metrics[metric]` indexed [width, size, seed]; sizes above the training set are clipped to it."""

    sizes: list[int]
    widths: list[int]
    metrics: dict[str, np.ndarray]

    def contribute(self, arrays: dict[str, np.ndarray], details: dict) -> None:
        """`samples.*` arrays [width, size, seed] with their axes `samples.values` (sizes) and `samples.widths`."""
        arrays.update({f"samples.{m}": v for m, v in self.metrics.items()})
        arrays["samples.values"] = np.asarray(self.sizes, dtype=np.int64)
        arrays["samples.widths"] = np.asarray(self.widths, dtype=np.int64)


@dataclass
class PhaseChart:
    """The activation-hash phase chart (spec §1.7): over width × epoch (§4.2) and width × sample size (§4.3), the
    seed-mean train RR and the regime read off it (`regimes`: 0 under-, 1 critically, 2 sufficiently expressive,
    -1 no value). Keyed "epochs" and, when the sample sweep ran, "samples"."""

    rr_train: dict[str, np.ndarray]
    regime: dict[str, np.ndarray]

    def contribute(self, arrays: dict[str, np.ndarray], details: dict) -> None:
        """`phase.<grid>.rr_train` and `phase.<grid>.regime` arrays per grid."""
        for key, rr in self.rr_train.items():
            arrays[f"phase.{key}.rr_train"] = rr
            arrays[f"phase.{key}.regime"] = self.regime[key]


def width_sweep(data: DigitsData, cfg: Config, log: Log = None) -> WidthSweep:
    """§4.1 and §4.2: train every (width, seed); metrics at the epoch checkpoints and at the end."""
    W, S, E = len(cfg.widths), len(cfg.seeds), len(cfg.epoch_checkpoints)
    final = {m: np.full((W, S), np.nan) for m in FINAL_METRICS}
    ep_metrics = ("rr_train", "rr_test", "n_bits", "test_acc", *[m for m in ("knn", "logreg") if m in
                                                                  cfg.epoch_metrics])
    if "kmeans" in cfg.epoch_metrics:
        ep_metrics += ("kmeans_test",)
    per_epoch = {m: np.full((W, E, S), np.nan) for m in ep_metrics}
    sweep = WidthSweep(widths=[int(w) for w in cfg.widths], epochs=list(cfg.epoch_checkpoints), final=final,
                       per_epoch=per_epoch, occupancy={}, epochs_trained={}, stopped_early={})
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
        sweep.occupancy[str(width)] = occ
        sweep.epochs_trained[str(width)] = info.epochs
        sweep.stopped_early[str(width)] = info.stopped_early
        if log:
            log(f"width {width}: RR test {np.nanmean(final['rr_test'][wi]):.3f}, "
                f"9-NN {np.nanmean(final['knn'][wi]):.3f}")
    return sweep


def sample_sweep(data: DigitsData, cfg: Config, log: Log = None) -> SampleSweep | None:
    """§4.3: train on random subsets of each size (tiled to the full training set); None if the config asks for
    no sample sweep (no sizes, widths or seeds)."""
    if not (cfg.sample_sizes and cfg.sample_widths and cfg.sample_seeds):
        return None
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
    return SampleSweep(sizes=sizes, widths=list(cfg.sample_widths), metrics=out)


def phase_chart(width: WidthSweep, samples: SampleSweep | None, rr_sufficient: float,
                rr_under: float) -> PhaseChart:
    """The phase chart (spec §1.7): the seed-mean train RR of the §4.2 (width × epoch) and §4.3 (width × size)
    grids, and each cell's regime (`regimes` with the config's thresholds)."""
    grids = {"epochs": width.per_epoch["rr_train"]}
    if samples is not None:
        grids["samples"] = samples.metrics["rr_train"]
    rr_train, regime = {}, {}
    for key, rr_seeds in grids.items():
        with np.errstate(all="ignore"):
            rr = np.nanmean(rr_seeds, axis=-1)
        rr_train[key] = rr
        regime[key] = regimes(rr, rr_sufficient, rr_under)
    return PhaseChart(rr_train=rr_train, regime=regime)


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
