"""Sparse activation containers: fixed top-k rows, CSR rows, and the feature-major (CSC) index."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from interp.errors import ConfigError

INDEX_DTYPES = (torch.int32, torch.int64, torch.uint16)


@dataclass
class SparseActs:
    """Sparse latents of one hook: top-k (idx/val `[N, k]`) or CSR (idx/val `[nnz]` plus `crow` `[N+1]`).

    Rows must not repeat an index (top-k and thresholding guarantee this). `token_index` optionally maps each
    row to its `[sequence, position]` in the token source.
    """

    idx: Tensor
    val: Tensor
    d_sae: int
    crow: Tensor | None = None
    token_index: Tensor | None = None

    def __post_init__(self) -> None:
        self.validate(deep=False)

    # ----------------------------------------------------------------------------------------- shape facts
    @property
    def is_csr(self) -> bool:
        """True for the variable-length CSR layout (threshold encodings)."""
        return self.crow is not None

    @property
    def n_rows(self) -> int:
        """Number of token rows N."""
        return int(self.crow.numel() - 1) if self.is_csr else int(self.idx.shape[0])

    @property
    def k(self) -> int | None:
        """Entries per row for top-k, None for CSR."""
        return None if self.is_csr else int(self.idx.shape[1])

    @property
    def nnz(self) -> int:
        """Stored entries (including stored zeros of a top-k row whose ReLU clipped it)."""
        return int(self.idx.numel())

    @property
    def device(self) -> torch.device:
        return self.val.device

    def row_lengths(self) -> Tensor:
        """Entries stored per row, int64 `[N]`."""
        if self.is_csr:
            return self.crow[1:] - self.crow[:-1]
        return torch.full((self.n_rows,), self.idx.shape[1], dtype=torch.int64, device=self.device)

    def row_ids(self) -> Tensor:
        """Row of each stored entry in flat (row-major) order, int64 `[nnz]`."""
        rows = torch.arange(self.n_rows, device=self.device)
        return torch.repeat_interleave(rows, self.row_lengths())

    # ----------------------------------------------------------------------------------------- conversions
    def to(self, device: str | torch.device, non_blocking: bool = False) -> SparseActs:
        """Copy to a device (indices keep their dtype)."""
        mv = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)  # noqa: E731
        return SparseActs(mv(self.idx), mv(self.val), self.d_sae, mv(self.crow), mv(self.token_index))

    def to_dense(self, dtype: torch.dtype | None = None) -> Tensor:
        """Dense `[N, d_sae]` latents (zeros where nothing is stored)."""
        dtype = dtype or self.val.dtype
        out = torch.zeros(self.n_rows, self.d_sae, dtype=dtype, device=self.device)
        if self.is_csr:
            out[self.row_ids(), self.idx.long()] = self.val.to(dtype)
        else:
            out.scatter_(1, self.idx.long(), self.val.to(dtype))
        return out

    def flat_idx(self) -> Tensor:
        """Stored latent ids in flat row-major order `[nnz]`."""
        return self.idx.reshape(-1)

    def flat_val(self) -> Tensor:
        """Stored values in flat row-major order `[nnz]`."""
        return self.val.reshape(-1)

    # ----------------------------------------------------------------------------------------- checks
    def validate(self, deep: bool = True) -> None:
        """Check shapes and dtypes (and, with deep=True, index ranges and CSR monotonicity)."""
        if self.idx.dtype not in INDEX_DTYPES:
            raise ConfigError(f"sparse indices have dtype {self.idx.dtype}", hint="use int32 (or int64/uint16)")
        if not self.val.is_floating_point():
            raise ConfigError(f"sparse values have dtype {self.val.dtype}", hint="use float16/bfloat16/float32")
        if self.idx.shape != self.val.shape:
            raise ConfigError(f"idx shape {tuple(self.idx.shape)} != val shape {tuple(self.val.shape)}",
                              hint="idx and val must have one entry each per stored latent")
        if self.d_sae <= 0:
            raise ConfigError(f"d_sae must be positive, got {self.d_sae}", hint="pass the dictionary size")
        if self.is_csr:
            if self.idx.dim() != 1 or self.crow.dim() != 1 or self.crow.numel() < 1:
                raise ConfigError("CSR needs flat idx/val and crow of length N+1", hint="see SparseActs docs")
        elif self.idx.dim() != 2:
            raise ConfigError(f"top-k idx must be [N, k], got shape {tuple(self.idx.shape)}",
                              hint="pass crow=... for the CSR layout")
        if not deep:
            return
        if self.idx.numel():
            lo, hi = int(self.idx.min()), int(self.idx.max())
            if lo < 0 or hi >= self.d_sae:
                raise ConfigError(f"latent ids span [{lo}, {hi}] outside [0, {self.d_sae})",
                                  hint="check d_sae and the index dtype (uint16 only for d_sae ≤ 65536)")
        if self.is_csr:
            c = self.crow
            if int(c[0]) != 0 or int(c[-1]) != self.idx.numel() or bool((c[1:] < c[:-1]).any()):
                raise ConfigError("crow is not a monotone offset array from 0 to nnz", hint="rebuild the CSR")


@dataclass
class FeatureMajor:
    """Feature-major (CSC) index: entries of latent j are `offsets[j]:offsets[j+1]`, sorted by token row.

    `flat_pos` holds each entry's position in the row-major source so the inverse permutation is exact.
    """

    offsets: Tensor  # int64 [d_sae + 1]
    rows: Tensor  # int64 [nnz] token row of each entry
    vals: Tensor  # [nnz]
    flat_pos: Tensor  # int64 [nnz]
    n_rows: int
    k: int | None = None  # top-k width of the source, None for CSR
    src_crow: Tensor | None = None  # CSR offsets of the source, needed to invert a CSR

    @property
    def d_sae(self) -> int:
        return int(self.offsets.numel() - 1)

    def counts(self) -> Tensor:
        """Stored entries per latent, int64 `[d_sae]`."""
        return self.offsets[1:] - self.offsets[:-1]

    def latents(self) -> Tensor:
        """Latent id of each entry, int64 `[nnz]`."""
        ids = torch.arange(self.d_sae, device=self.offsets.device)
        return torch.repeat_interleave(ids, self.counts())
