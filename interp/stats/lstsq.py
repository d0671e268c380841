"""Streaming linear least squares: accumulate XᵀX, XᵀY (float64) over batches; memory O(d²) whatever N.

    acc = StreamingLstsq(d_in, d_out, fit_intercept=True, ridge=0.0)
    for X, Y in batches: acc.update(X, Y)          # [n, d_in], [n, d_out]
    acc.all_reduce()                               # optional: sum the statistics over torch.distributed ranks
    sol = acc.solve()                              # LstsqSolution(W [d_in, d_out], b [d_out])
    Yhat = sol.predict(X)
    sol = lstsq_from_cache(cache, x_hook, y_hook)  # the same over a cache; data-parallel under torchrun

With an intercept the solve uses the centred normal equations (Sxx + ridge·I) W = Sxy, b = ȳ − x̄ᵀW, which is
exactly the least-squares fit on [X, 1] with an unpenalised intercept. The sums are shifted by the first batch's
means before accumulating (and re-centred on the common means when merged or all-reduced), so large activation
offsets do not cost precision in the centring.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from interp.errors import ConfigError

_F64 = torch.float64


@dataclass
class LstsqSolution:
    """Fitted map y ≈ x @ W + b (W: [d_in, d_out], b: [d_out], float64)."""

    W: torch.Tensor
    b: torch.Tensor
    n: int
    fit_intercept: bool
    ridge: float

    def predict(self, X: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """x @ W + b, computed in float64 and returned in `dtype` (default: X's dtype)."""
        out = X.to(device=self.W.device, dtype=_F64) @ self.W + self.b
        return out.to(dtype or X.dtype)


class StreamingLstsq:
    """Accumulates the sufficient statistics of a multi-output linear regression batch by batch."""

    def __init__(self, d_in: int, d_out: int, *, fit_intercept: bool = True, ridge: float = 0.0,
                 device: str | torch.device = "cpu"):
        if d_in < 1 or d_out < 1:
            raise ConfigError(f"d_in and d_out must be positive, got {d_in}, {d_out}", hint="check shapes")
        if ridge < 0:
            raise ConfigError(f"ridge must be >= 0, got {ridge}", hint="use 0 for ordinary least squares")
        self.d_in, self.d_out = d_in, d_out
        self.fit_intercept, self.ridge = fit_intercept, float(ridge)
        self.device = torch.device(device)
        self.n = 0
        self.shift_x: torch.Tensor | None = None  # per-feature shifts (first batch means) for stable centring
        self.shift_y: torch.Tensor | None = None
        self.sx = torch.zeros(d_in, dtype=_F64, device=self.device)
        self.sy = torch.zeros(d_out, dtype=_F64, device=self.device)
        self.xtx = torch.zeros(d_in, d_in, dtype=_F64, device=self.device)
        self.xty = torch.zeros(d_in, d_out, dtype=_F64, device=self.device)

    def _check(self, X: torch.Tensor, Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if Y.dim() == 1:
            Y = Y[:, None]
        if X.dim() != 2 or X.shape[1] != self.d_in or Y.shape != (X.shape[0], self.d_out):
            raise ConfigError(f"batch shapes X{tuple(X.shape)} Y{tuple(Y.shape)} do not match "
                              f"d_in={self.d_in}, d_out={self.d_out}", hint="pass X [n, d_in] and Y [n, d_out]")
        return X.to(device=self.device, dtype=_F64), Y.to(device=self.device, dtype=_F64)

    def update(self, X: torch.Tensor, Y: torch.Tensor) -> StreamingLstsq:
        """Add one batch: X [n, d_in], Y [n, d_out] (or [n] when d_out == 1)."""
        X, Y = self._check(X, Y)
        if X.shape[0] == 0:
            return self
        if self.shift_x is None:
            if self.fit_intercept:
                self.shift_x, self.shift_y = X.mean(0), Y.mean(0)
            else:
                self.shift_x = torch.zeros(self.d_in, dtype=_F64, device=self.device)
                self.shift_y = torch.zeros(self.d_out, dtype=_F64, device=self.device)
        Xc, Yc = X - self.shift_x, Y - self.shift_y
        self.n += X.shape[0]
        self.sx += Xc.sum(0)
        self.sy += Yc.sum(0)
        self.xtx += Xc.T @ Xc
        self.xty += Xc.T @ Yc
        return self

    def update_all(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> StreamingLstsq:
        """Add every (X, Y) batch of an iterable."""
        for X, Y in batches:
            self.update(X, Y)
        return self

    # ------------------------------------------------------------------------------------------ combining
    def state(self) -> dict[str, torch.Tensor]:
        """The statistics as tensors (shift-free: raw sums), for saving or sending between processes."""
        sx, sy, xtx, xty = self._raw()
        return {"n": torch.tensor(float(self.n), dtype=_F64), "sx": sx, "sy": sy, "xtx": xtx, "xty": xty}

    def _raw(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Uncentred sums Σx, Σy, ΣxxᵀΣ, Σxyᵀ reconstructed from the shifted ones."""
        if self.shift_x is None:
            return self.sx.clone(), self.sy.clone(), self.xtx.clone(), self.xty.clone()
        a, c, n = self.shift_x, self.shift_y, self.n
        sx = self.sx + n * a
        sy = self.sy + n * c
        xtx = self.xtx + torch.outer(self.sx, a) + torch.outer(a, self.sx) + n * torch.outer(a, a)
        xty = self.xty + torch.outer(self.sx, c) + torch.outer(a, self.sy) + n * torch.outer(a, c)
        return sx, sy, xtx, xty

    def _shifted_to(self, mx: torch.Tensor, my: torch.Tensor) -> list[torch.Tensor]:
        """[Σ(x−mx), Σ(y−my), Σ(x−mx)(x−mx)ᵀ, Σ(x−mx)(y−my)ᵀ]: the sums re-centred on new shifts, without
        forming the uncentred sums (which would cost precision when the means are large)."""
        if self.shift_x is None:
            return [torch.zeros_like(t) for t in (self.sx, self.sy, self.xtx, self.xty)]
        dx, dy, n = self.shift_x - mx, self.shift_y - my, self.n
        return [self.sx + n * dx, self.sy + n * dy,
                self.xtx + torch.outer(self.sx, dx) + torch.outer(dx, self.sx) + n * torch.outer(dx, dx),
                self.xty + torch.outer(self.sx, dy) + torch.outer(dx, self.sy) + n * torch.outer(dx, dy)]

    def _set_shifted(self, n: int, mx: torch.Tensor, my: torch.Tensor, sums: list[torch.Tensor]) -> None:
        self.n, self.shift_x, self.shift_y = int(n), mx, my
        self.sx, self.sy, self.xtx, self.xty = (t.clone() for t in sums)

    def _raw_means(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(Σx, Σy) uncentred: only first-order terms, so exact enough to pick a common shift."""
        if self.shift_x is None:
            return torch.zeros_like(self.sx), torch.zeros_like(self.sy)
        return self.sx + self.n * self.shift_x, self.sy + self.n * self.shift_y

    def merge(self, other: StreamingLstsq) -> StreamingLstsq:
        """Add another accumulator's statistics (same shapes) into this one."""
        if (other.d_in, other.d_out) != (self.d_in, self.d_out):
            raise ConfigError("cannot merge accumulators of different shapes", hint="use the same d_in/d_out")
        n = self.n + other.n
        if n == 0:
            return self
        (ax, ay), (bx, by) = self._raw_means(), other._raw_means()
        mx, my = (ax + bx) / n, (ay + by) / n  # both re-centred on the combined means
        sums = [a + b for a, b in zip(self._shifted_to(mx, my), other._shifted_to(mx, my))]
        self._set_shifted(n, mx, my, sums)
        return self

    def all_reduce(self, group: object | None = None) -> StreamingLstsq:
        """Sum the statistics over all torch.distributed ranks (no-op when not initialised).

        Two all-reduces: the counts and first-order sums give the global means, then every rank's sums are
        re-centred on them and summed, so the result is as precise as one process's shifted accumulation.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        di, do = self.d_in, self.d_out
        sx, sy = self._raw_means()
        first = torch.cat([torch.tensor([float(self.n)], dtype=_F64, device=self.device), sx, sy])
        dist.all_reduce(first, group=group)
        n = int(first[0].item())
        if n == 0:
            return self
        mx, my = first[1:1 + di] / n, first[1 + di:] / n
        flat = torch.cat([t.flatten() for t in self._shifted_to(mx, my)])
        dist.all_reduce(flat, group=group)
        sizes = [di, do, di * di, di * do]
        parts = list(torch.split(flat, sizes))
        self._set_shifted(n, mx, my, [parts[0], parts[1], parts[2].view(di, di), parts[3].view(di, do)])
        return self

    # ------------------------------------------------------------------------------------------ solving
    def solve(self) -> LstsqSolution:
        """Least-squares (ridge if > 0) solution from the accumulated statistics, in float64."""
        min_n = 1 + int(self.fit_intercept)
        if self.n < min_n:
            raise ConfigError(f"only {self.n} rows accumulated", hint="feed more data before solving")
        if self.fit_intercept:
            mx, my = self.sx / self.n, self.sy / self.n  # means of the shifted data
            A = self.xtx - self.n * torch.outer(mx, mx)
            B = self.xty - self.n * torch.outer(mx, my)
        else:  # through the origin: the raw sums ΣxxᵀΣ, Σxyᵀ (merge/all_reduce leave the sums shifted to the means)
            _, _, A, B = self._raw()
        if self.ridge > 0:
            A = A + self.ridge * torch.eye(self.d_in, dtype=_F64, device=self.device)
        W = _solve_psd(A, B)
        if self.fit_intercept:
            b = (self.shift_y + my) - (self.shift_x + mx) @ W
        else:
            b = torch.zeros(self.d_out, dtype=_F64, device=self.device)
        return LstsqSolution(W=W, b=b, n=self.n, fit_intercept=self.fit_intercept, ridge=self.ridge)


def _solve_psd(A: torch.Tensor, B: torch.Tensor, rcond: float = 1e-12) -> torch.Tensor:
    """Solve A W = B for symmetric PSD A: Cholesky when well posed, else the minimum-norm pseudo-inverse."""
    A = 0.5 * (A + A.T)
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) == 0:
        diag = torch.diagonal(L)
        if diag.min() > 0 and (diag.min() / diag.max()) ** 2 > 1e-10:
            return torch.cholesky_solve(B, L)
    evals, evecs = torch.linalg.eigh(A)
    keep = evals > rcond * evals.abs().max().clamp_min(1e-300)
    inv = torch.where(keep, 1.0 / evals.where(keep, torch.ones_like(evals)), torch.zeros_like(evals))
    return evecs @ (inv[:, None] * (evecs.T @ B))


def lstsq(X: torch.Tensor, Y: torch.Tensor, *, fit_intercept: bool = True, ridge: float = 0.0,
          batch_size: int = 65_536) -> LstsqSolution:
    """In-memory convenience: stream (X, Y) through StreamingLstsq in row batches and solve."""
    Y2 = Y[:, None] if Y.dim() == 1 else Y
    acc = StreamingLstsq(X.shape[1], Y2.shape[1], fit_intercept=fit_intercept, ridge=ridge)
    for s in range(0, X.shape[0], batch_size):
        acc.update(X[s:s + batch_size], Y2[s:s + batch_size])
    return acc.solve()


Transform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def accumulate_from_cache(cache_or_reader: Any, x_hook: str, y_hook: str | None = None, *, start: int = 0,
                          stop: int | None = None, batch_size: int = 65_536, fit_intercept: bool = True,
                          ridge: float = 0.0, transform: Transform | None = None, rank: int | None = None,
                          world: int | None = None, device: str | torch.device = "cpu") -> StreamingLstsq:
    """StreamingLstsq over rows [start, stop) of a cache, summed over ranks (see lstsq_from_cache)."""
    from interp.cache import CacheReader, open_cache
    from interp.distributed import data_split

    reader = cache_or_reader if isinstance(cache_or_reader, CacheReader) else open_cache(cache_or_reader)
    rank, world = data_split(rank, world)
    for hook in {x_hook, y_hook or x_hook}:
        if hook not in reader.hooks:
            raise ConfigError(f"the cache has no hook {hook}", hint=f"cached hooks: {', '.join(reader.hooks)}")
    split = {"batch_size": batch_size, "start": start, "stop": stop, "rank": rank, "world": world}
    xs = reader.iter_batches(x_hook, **split)
    pairs = ((x, x) for x in xs) if y_hook in (None, x_hook) else zip(xs, reader.iter_batches(y_hook, **split))
    acc = None
    for x, y in pairs:
        X, Y = transform(x, y) if transform is not None else (x, y)
        X, Y = X.reshape(X.shape[0], -1), Y.reshape(Y.shape[0], -1)
        if acc is None:
            acc = StreamingLstsq(X.shape[1], Y.shape[1], fit_intercept=fit_intercept, ridge=ridge, device=device)
        acc.update(X, Y)
    if world > 1:  # a rank may have read no batch: agree on the shapes, then sum the statistics over ranks
        import torch.distributed as dist

        dims = torch.tensor([acc.d_in, acc.d_out] if acc is not None else [0, 0], dtype=torch.int64, device=device)
        dist.all_reduce(dims, op=dist.ReduceOp.MAX)
        if acc is None and int(dims.min()) > 0:
            acc = StreamingLstsq(int(dims[0]), int(dims[1]), fit_intercept=fit_intercept, ridge=ridge, device=device)
        if acc is not None:
            acc.all_reduce()
    if acc is None:
        raise ConfigError(f"rows [{start}, {stop}) of the cache hold no data for {x_hook}",
                          hint="check start/stop against the cache's n_rows")
    return acc


def lstsq_from_cache(cache_or_reader: Any, x_hook: str, y_hook: str | None = None, *, start: int = 0,
                     stop: int | None = None, batch_size: int = 65_536, fit_intercept: bool = True, ridge: float = 0.0,
                     transform: Transform | None = None, rank: int | None = None, world: int | None = None,
                     device: str | torch.device = "cpu") -> LstsqSolution:
    """Regress y_hook on x_hook over rows [start, stop) of a cache (a folder or CacheReader), streaming in float64.

    y_hook=None regresses on x_hook's own rows (with a `transform`, which maps each (x, y) batch to the (X, Y) to
    fit, e.g. to derive targets per batch). rank/world (default: interp.distributed.rank_world()) split the batches
    for data-parallel reading: rank r reads batches r, r + world, ..., and with world > 1 the sums XᵀX, XᵀY are
    all-reduced over the initialised process group, so every rank returns the fit over all rows.
    """
    return accumulate_from_cache(cache_or_reader, x_hook, y_hook, start=start, stop=stop, batch_size=batch_size,
                                 fit_intercept=fit_intercept, ridge=ridge, transform=transform, rank=rank,
                                 world=world, device=device).solve()
