"""Per-hook storage formats: how a shard's `[rows, ...]` activations become arrays on disk, and back.

"dense" stores the tensor as one `.npy` per shard; "topk" and "threshold" (CSR) store it sparsely
(interp.cache.sparse_formats). Every format is listed in the one table `FORMATS` at the end of this module. Formats
know only tensors: what a hook's rows are (raw activations, an SAE's latents) is decided on the capture side before
they reach `encode`. The manifest records each hook's format spec, so readers need no model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from interp.cache.shards import STORAGE, from_storage, to_storage
from interp.cache.sparse_formats import SPARSE_FORMATS, codecs
from interp.errors import CacheError


@dataclass
class Format:
    """A storage format: `encode(x, spec) -> {role: array}`, `decode({role: array}, spec) -> tensor`."""

    name: str
    encode: Callable[[torch.Tensor, dict], dict[str, np.ndarray]]
    decode: Callable[[dict[str, np.ndarray], dict], torch.Tensor]
    roles: tuple[str, ...] = ("data",)
    defaults: dict[str, Any] = field(default_factory=dict)
    # Optional fast path: decode only rows [a, b) of a shard (dense slices the memory map before copying).
    decode_rows: Callable[[dict[str, np.ndarray], dict, int, int], torch.Tensor] | None = None
    # Optional fast path for arbitrary rows: decode only rows `local` (int64 array, any order, repeats) of a shard.
    gather_rows: Callable[[dict[str, np.ndarray], dict, np.ndarray], torch.Tensor] | None = None
    # Optional validation of a spec read from a manifest (format-specific keys); raises ValueError when malformed.
    validate: Callable[[dict], None] | None = None
    # Optional check of one shard's arrays against the manifest (rows, shapes, dtypes, index ranges) the first time
    # the reader opens them: check_arrays(arrays, spec, n_rows) raises ValueError naming what disagrees.
    check_arrays: Callable[[dict[str, np.ndarray], dict, int], None] | None = None
    # Optional split of `encode` for extraction on a GPU: select(x, spec) keeps a batch's entries as tensors on x's
    # device (only they are copied to the host), pack([parts of each batch], spec) makes the shard's arrays.
    select: Callable[[torch.Tensor, dict], dict[str, torch.Tensor]] | None = None
    pack: Callable[[list[dict[str, torch.Tensor]], dict], dict[str, np.ndarray]] | None = None


def _dense_encode(x: torch.Tensor, spec: dict) -> dict[str, np.ndarray]:
    return {"data": to_storage(x, spec["dtype"])}


def _dense_decode(arrays: dict[str, np.ndarray], spec: dict) -> torch.Tensor:
    return from_storage(arrays["data"], spec["dtype"])


def _dense_decode_rows(arrays: dict[str, np.ndarray], spec: dict, a: int, b: int) -> torch.Tensor:
    return from_storage(arrays["data"][a:b], spec["dtype"])


def _dense_gather_rows(arrays: dict[str, np.ndarray], spec: dict, local: np.ndarray) -> torch.Tensor:
    return from_storage(np.asarray(arrays["data"][local]), spec["dtype"])


def _dense_check(arrays: dict[str, np.ndarray], spec: dict, n_rows: int) -> None:
    data = arrays["data"]
    if data.shape != (n_rows, *spec["shape"]) or data.dtype != STORAGE[spec["dtype"]][1]:
        raise ValueError(f"holds {data.dtype} {list(data.shape)}, the manifest says {spec['dtype']} "
                         f"{[n_rows, *spec['shape']]}")


FORMATS: dict[str, Format] = {
    "dense": Format("dense", _dense_encode, _dense_decode, decode_rows=_dense_decode_rows,
                    gather_rows=_dense_gather_rows, check_arrays=_dense_check),
    **{kind: Format(kind, **codecs(kind)) for kind in SPARSE_FORMATS},
}


def get(name: str) -> Format:
    """The format called `name`; a CacheError naming the known ones otherwise."""
    if name not in FORMATS:
        raise CacheError(f"unknown cache storage format '{name}'", hint=f"known: {', '.join(sorted(FORMATS))}")
    return FORMATS[name]


def known() -> dict[str, Format]:
    """Every format by name."""
    return dict(FORMATS)
