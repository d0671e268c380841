"""Train several same-width digits MLPs at once (stacked parameters, batched matmuls), then hand out nn.Modules.

Each member has its own seed (initialisation and batch order), its own training subset (tiled to a common length)
and its own early-stopping state, so a member trains exactly as it would alone; batching only removes per-step
Python overhead, which dominates for these tiny networks. `member(i)` returns a plain `nn.Sequential` whose
ReLU modules the code extraction hooks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from analyses.hashcodes.digits import SCHEDULES, DigitsData, make_mlp
from interp.errors import ConfigError


@dataclass
class EnsembleInfo:
    """Per member: epochs trained, whether it stopped early, its epoch-loss curve."""

    epochs: list[int] = field(default_factory=list)
    stopped_early: list[bool] = field(default_factory=list)
    loss_curves: list[list[float]] = field(default_factory=list)


class MLPEnsemble:
    """S same-shape MLPs (Linear -> [BN] -> ReLU) x depth -> Linear, parameters stacked on a leading member axis."""

    def __init__(self, d_in: int, width: int, n_classes: int, seeds: Sequence[int], depth: int = 1,
                 batchnorm: bool = False, init: str = "glorot", bias_init: str = "uniform",
                 dtype: torch.dtype = torch.float64):
        self.width, self.depth, self.batchnorm, self.n_classes = width, depth, batchnorm, n_classes
        self.dtype = dtype
        self.d_in = d_in
        mods = [make_mlp(d_in, width, n_classes, depth, batchnorm, init, bias_init, seed=s) for s in seeds]
        lins = [[m for m in mod if isinstance(m, torch.nn.Linear)] for mod in mods]
        self.W = [torch.stack([ls[i].weight.detach().T for ls in lins]).to(dtype).contiguous()
                  for i in range(depth + 1)]
        self.b = [torch.stack([ls[i].bias.detach() for ls in lins]).to(dtype).contiguous() for i in range(depth + 1)]
        S = len(seeds)
        self.gamma = [torch.ones(S, width, dtype=dtype) for _ in range(depth)] if batchnorm else []
        self.beta = [torch.zeros(S, width, dtype=dtype) for _ in range(depth)] if batchnorm else []
        self.run_mean = [torch.zeros(S, width, dtype=dtype) for _ in range(depth)]
        self.run_var = [torch.ones(S, width, dtype=dtype) for _ in range(depth)]

    @property
    def size(self) -> int:
        """Number of members."""
        return self.W[0].shape[0]

    def params(self) -> list[torch.Tensor]:
        """The trainable stacked tensors."""
        return [*self.W, *self.b, *self.gamma, *self.beta]

    def forward(self, x: torch.Tensor, train: bool = False, active: torch.Tensor | None = None,
                momentum: float = 0.01, eps: float = 1e-3) -> torch.Tensor:
        """Logits `[S, B, C]` for inputs `[S, B, d_in]` (or `[B, d_in]`); BN stats update for `active` members."""
        x = x.to(self.dtype)
        h = x if x.dim() == 3 else x.unsqueeze(0).expand(self.size, -1, -1)
        for i in range(self.depth):
            h = torch.baddbmm(self.b[i].unsqueeze(1), h, self.W[i])
            if self.batchnorm:
                if train:
                    mean, var = h.mean(1), h.var(1, unbiased=False)
                    with torch.no_grad():
                        n = h.shape[1]
                        mom = torch.full((self.size, 1), momentum, dtype=self.dtype)
                        if active is not None:
                            mom = mom * active.unsqueeze(1)
                        self.run_mean[i].mul_(1 - mom).add_(mom * mean)
                        self.run_var[i].mul_(1 - mom).add_(mom * var * n / max(n - 1, 1))
                else:
                    mean, var = self.run_mean[i], self.run_var[i]
                h = (h - mean.unsqueeze(1)) / torch.sqrt(var.unsqueeze(1) + eps)
                h = h * self.gamma[i].unsqueeze(1) + self.beta[i].unsqueeze(1)
            h = torch.relu(h)
        return torch.baddbmm(self.b[-1].unsqueeze(1), h, self.W[-1])

    def member(self, i: int) -> torch.nn.Sequential:
        """Member i as a plain `nn.Sequential` in eval mode (same layout as `make_mlp`, the ensemble's dtype)."""
        mod = make_mlp(self.d_in, self.width, self.n_classes, self.depth, self.batchnorm).to(self.dtype)
        lins = [m for m in mod if isinstance(m, torch.nn.Linear)]
        bns = [m for m in mod if isinstance(m, torch.nn.BatchNorm1d)]
        with torch.no_grad():
            for j, lin in enumerate(lins):
                lin.weight.copy_(self.W[j][i].T)
                lin.bias.copy_(self.b[j][i])
            for j, bn in enumerate(bns):
                bn.weight.copy_(self.gamma[j][i])
                bn.bias.copy_(self.beta[j][i])
                bn.running_mean.copy_(self.run_mean[j][i])
                bn.running_var.copy_(self.run_var[j][i])
        return mod.eval()


def train_ensemble(data: DigitsData, width: int, seeds: Sequence[int], *, depth: int = 1, batchnorm: bool = False,
                   schedule: str = "sklearn", init: str = "glorot", max_epochs: int | None = None,
                   early_stopping: bool = True, train_idx: Sequence[np.ndarray] | None = None,
                   tile_to: int | None = None, checkpoints: Sequence[int] = (),
                   on_checkpoint: Callable[[int, MLPEnsemble], None] | None = None,
                   dtype: torch.dtype = torch.float64) -> tuple[MLPEnsemble, EnsembleInfo]:
    """Train one member per seed (see digits.py for the two schedules); `on_checkpoint(epoch, ens)` at `checkpoints`.

    `train_idx[i]` is member i's training subset, tiled cyclically to `tile_to` samples per epoch (all members
    need equal epoch lengths). A member that stops early is frozen; checkpoints after that see its final state.
    Training runs in float64 by default, as scikit-learn's MLPClassifier does (float32 lowers 9-NN by ~0.01).
    """
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule '{schedule}'", hint=f"use one of {', '.join(SCHEDULES)}")
    S = len(seeds)
    if S == 0:
        raise ConfigError("train_ensemble needs at least one seed", hint="pass seeds=[0]")
    paper = schedule == "paper"
    max_epochs = max_epochs if max_epochs is not None else (200 if paper else 500)
    n_all = len(data.y_train)
    subsets = [np.arange(n_all)] * S if train_idx is None else [np.asarray(t) for t in train_idx]
    if len(subsets) != S:
        raise ConfigError(f"{len(subsets)} training subsets for {S} seeds", hint="pass one subset per seed")
    subsets = [np.resize(t, max(tile_to, t.size)) if tile_to else t for t in subsets]
    n = subsets[0].size
    if any(t.size != n for t in subsets):
        raise ConfigError("members' training subsets differ in length", hint="pass tile_to to equalise them")
    idx = torch.as_tensor(np.stack(subsets), dtype=torch.long)  # [S, n]
    y_all = torch.as_tensor(data.y_train)
    ens = MLPEnsemble(data.X_train.shape[1], width, int(data.y_train.max()) + 1, seeds, depth, batchnorm, init,
                      bias_init="zero" if paper else "uniform", dtype=dtype)
    X_all = data.X_train.to(dtype)
    params = ens.params()
    for p in params:
        p.requires_grad_(True)
    m1 = [torch.zeros_like(p) for p in params]
    m2 = [torch.zeros_like(p) for p in params]
    batch = 64 if paper else min(200, n)
    lr0, l2, eps = (1e-2, 1e-6, 1e-7) if paper else (1e-3, 1e-4, 1e-8)
    b1, b2 = 0.9, 0.999
    gens = [torch.Generator().manual_seed(10_000 + s) for s in seeds]
    ckpts = sorted(set(int(c) for c in checkpoints))
    if on_checkpoint is not None and 0 in ckpts:
        on_checkpoint(0, ens)
    active = torch.ones(S, dtype=torch.bool)
    best = torch.full((S,), math.inf, dtype=torch.float64)
    no_improve = torch.zeros(S, dtype=torch.long)
    info = EnsembleInfo(epochs=[0] * S, stopped_early=[False] * S, loss_curves=[[] for _ in range(S)])
    rows = torch.arange(S).unsqueeze(1)
    t_step, epoch = 0, 0
    for epoch in range(1, max_epochs + 1):
        lr = lr0 * 0.1 ** ((epoch - 1) // 20) if paper else lr0
        perm = torch.stack([torch.randperm(n, generator=g) for g in gens])  # per-member batch order
        total = torch.zeros(S, dtype=torch.float64)
        for s in range(0, n, batch):
            sel = idx[rows, perm[:, s: s + batch]]  # [S, B] sample ids
            B = sel.shape[1]
            logits = ens.forward(X_all[sel], train=True, active=active)
            ce = torch.nn.functional.cross_entropy(logits.reshape(S * B, -1), y_all[sel].reshape(-1),
                                                   reduction="none").view(S, B).mean(1)
            sq = sum((w * w).sum(dim=(1, 2)) for w in ens.W)
            # sklearn: CE + alpha/2 * ||W||^2 / batch;   Keras: CE + l2 * ||W||^2
            loss = ce + (l2 * sq if paper else 0.5 * l2 * sq / B)
            grads = torch.autograd.grad(loss.sum(), params)
            act = active.to(dtype)
            t_step += 1
            step = lr * math.sqrt(1 - b2**t_step) / (1 - b1**t_step)  # Adam as in sklearn / Keras 2.2
            with torch.no_grad():
                for p, g, a, v in zip(params, grads, m1, m2):
                    a.mul_(b1).add_(g, alpha=1 - b1)
                    v.mul_(b2).addcmul_(g, g, value=1 - b2)
                    upd = a / (v.sqrt() + eps)
                    p.sub_(upd * (step * act.view(-1, *([1] * (p.dim() - 1)))))
            total += loss.detach().double() * B
        ep_loss = total / n
        for i in torch.nonzero(active).flatten().tolist():
            info.loss_curves[i].append(float(ep_loss[i]))
            info.epochs[i] = epoch
        if on_checkpoint is not None and epoch in ckpts:
            on_checkpoint(epoch, ens)
        if early_stopping:
            if paper:  # Keras EarlyStopping(monitor='loss', patience=10, min_delta=0)
                no_improve = torch.where(ep_loss < best, 0, no_improve + 1)
                stop = no_improve >= 10
            else:  # sklearn _update_no_improvement_count: tol=1e-4, n_iter_no_change=10
                no_improve = torch.where(ep_loss > best - 1e-4, no_improve + 1, 0)
                stop = no_improve > 10
            best = torch.minimum(best, ep_loss)
            newly = stop & active
            for i in torch.nonzero(newly).flatten().tolist():
                info.stopped_early[i] = True
            active &= ~stop
            if not active.any():
                break
    for p in params:
        p.requires_grad_(False)
    if on_checkpoint is not None:
        for c in ckpts:
            if c > epoch:
                on_checkpoint(c, ens)
    return ens, info
