"""Synthetic sparse caches with planted structure, written in the cache's own format (tests and benchmarks).

`write_sparse_cache` writes top-k latents (and optionally a dense hook over the same rows) shard by shard with the
real manifest, atomic `.npy` shards and token sidecar, so `interp.open_cache` reads them like an extraction's output
and the browser builder cannot tell the difference. `planted_shard` makes rows whose largest latent is a function of
the token (`token % d_sae`), the structure the benchmark and the tests look for.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from interp.cache.manifest import Manifest, ShardRecord
from interp.cache.shards import file_stem, shard_file, to_storage, write_npy_atomic
from interp.cache.sparse_formats import sparse_spec, topk_encode

Shard = tuple[np.ndarray, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]  # tokens, idx, val, dense hooks


def write_sparse_cache(out: str | Path, shards: Iterator[Shard], *, hook: str, d_sae: int, k: int,
                       value_dtype: str = "bfloat16", model: str = "synthetic", sae: str | None = None,
                       dense_shapes: dict[str, int] | None = None, csr: bool = False) -> Path:
    """Write a complete cache from `(tokens [n,3], idx [n,k], val [n,k], {dense_hook: [n, d]})` shards.

    Only one shard is in memory at a time (the generator's). `dense_shapes` names the dense hooks and their widths
    (stored float32). `csr=True` stores the latents as CSR ("threshold" format, the nonzero entries of each row)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = sparse_spec("threshold", d=d_sae, threshold=0.0, value_dtype=value_dtype, by="value") if csr else \
        sparse_spec("topk", d=d_sae, k=k, value_dtype=value_dtype, by="value")
    if sae is not None:
        spec["sae"] = str(sae)
    hooks = {hook: {"shape": [d_sae], "file_stem": file_stem(hook), **spec}}
    for name, width in (dense_shapes or {}).items():
        hooks[name] = {"shape": [width], "dtype": "float32", "file_stem": file_stem(name), "format": "dense"}
    identity = {"model": model, "model_source": model, "checkpoint": None, "hooks": list(hooks), "ctx": 0,
                "formats": {h: {k_: v for k_, v in s.items() if k_ not in ("shape", "file_stem")}
                            for h, s in hooks.items()}}
    manifest = Manifest(identity=identity, hooks=hooks, layout={})
    start = 0
    for index, (tokens, idx, val, dense) in enumerate(shards):
        n = len(tokens)
        files = {shard_file("tokens", index): write_npy_atomic(out / shard_file("tokens", index),
                                                                np.ascontiguousarray(tokens, dtype=np.int64))}
        stem = hooks[hook]["file_stem"]
        if csr:  # the nonzero entries of each row, in row order
            keep = val != 0
            crow = np.concatenate([[0], np.cumsum(keep.sum(1).numpy())]).astype(np.int64)
            idx, val = idx[keep], val[keep]
        ids = idx.to(torch.int32).numpy().astype(np.uint16 if spec["index_dtype"] == "uint16" else np.int32)
        arrays = {f"{stem}.idx": ids, f"{stem}.val": to_storage(val.to(torch.float32), value_dtype)}
        if csr:
            arrays[f"{stem}.crow"] = crow
        for name, x in dense.items():
            arrays[hooks[name]["file_stem"]] = x.to(torch.float32).numpy()
        for role, arr in arrays.items():
            files[shard_file(role, index)] = write_npy_atomic(out / shard_file(role, index), np.ascontiguousarray(arr))
        manifest.shards.append(ShardRecord(index, (start, start + n), (index, index + 1), files))
        start += n
    manifest.status = "complete"
    manifest.save(out)
    return out


def dense_shards(latents: torch.Tensor, tokens: np.ndarray, k: int, shard_rows: int,
                 dense: dict[str, torch.Tensor] | None = None) -> Iterator[Shard]:
    """Shards of a dense `[N, d_sae]` latent matrix kept top-k by value (the codec extraction uses)."""
    spec = {"k": k, "by": "value", "index_dtype": "int32", "dtype": "float32"}
    for a in range(0, len(tokens), shard_rows):
        b = min(a + shard_rows, len(tokens))
        enc = topk_encode(latents[a:b], spec)
        yield (tokens[a:b], torch.from_numpy(enc["idx"]).long(), torch.from_numpy(enc["val"]),
               {h: x[a:b] for h, x in (dense or {}).items()})


def planted_shard(index: int, n_rows: int, d_sae: int, k: int, vocab: int, seq_len: int,
                  seed: int = 0) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """Rows whose token t fires latent `t % d_sae` at 4 + U(0, 1) (the planted latent) plus k−1 other distinct
    latents at U(0, 1): tokens `[n, 3]` (id, sequence, position), ids `[n, k]`, values `[n, k]`."""
    g = torch.Generator().manual_seed(seed * 100_003 + index)
    tok = torch.randint(0, vocab, (n_rows,), generator=g)
    planted = tok % d_sae
    step = max(1, (d_sae - 1) // max(1, k - 1))  # offsets 1 + r + j·step are distinct and nonzero mod d_sae
    r = torch.randint(0, step, (n_rows, 1), generator=g)
    offsets = 1 + r + torch.arange(k - 1)[None, :] * step
    idx = torch.cat([planted[:, None], (planted[:, None] + offsets) % d_sae], dim=1)
    val = torch.rand(n_rows, k, generator=g)
    val[:, 0] += 4.0
    rows = np.arange(index * n_rows, (index + 1) * n_rows)
    tokens = np.stack([tok.numpy(), rows // seq_len, rows % seq_len], axis=1).astype(np.int64)
    return tokens, idx, val


def planted_cache(out: str | Path, n_rows: int, *, d_sae: int = 512, k: int = 16, vocab: int = 4096,
                  seq_len: int = 128, shard_rows: int = 65_536, hook: str = "blocks.0.hook_resid_post",
                  seed: int = 0, value_dtype: str = "bfloat16") -> Path:
    """A top-k cache of `n_rows` planted rows (shard_rows a multiple of seq_len keeps sequences whole)."""
    def gen() -> Iterator[Shard]:
        done = 0
        for i in range((n_rows + shard_rows - 1) // shard_rows):
            n = min(shard_rows, n_rows - done)
            t, idx, v = planted_shard(i, n, d_sae, k, vocab, seq_len, seed)
            t[:, 1:] = np.stack([(np.arange(done, done + n)) // seq_len, np.arange(done, done + n) % seq_len], 1)
            done += n
            yield t, idx, v, {}

    return write_sparse_cache(out, gen(), hook=hook, d_sae=d_sae, k=k, value_dtype=value_dtype)

