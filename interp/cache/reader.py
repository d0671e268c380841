"""Reading a cache: memory-mapped shards, random access by row, batches as torch tensors, exports for sae-lens.

Readers need only the cache folder (never the model). Every shard file is checked against the manifest the
first time it is opened: its size always, its checksum too unless verify="size" (xxh3_128, or sha256 in caches
written before it: interp.cache.checksum).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from interp.cache.formats import get as get_format
from interp.cache.manifest import MANIFEST, Manifest, ShardRecord
from interp.cache.shards import check_file, open_npy, shard_file
from interp.errors import CacheCorruptError, CacheError, ConfigError

VERIFY_MODES = ("lazy", "size", "none")
_MISMATCH = "the manifest does not describe these files; run interp cache verify"


class CacheReader:
    """A complete (or in-progress) cache folder. Rows are tokens in extraction order, across all shards.

    `allow_incomplete=True` opens an extraction that is still running or was stopped: its rows are those of the
    shards listed from 0 up to the first one not yet listed (`listed` has every listed shard)."""

    def __init__(self, path: str | Path, verify: str = "lazy", allow_incomplete: bool = False):
        if verify not in VERIFY_MODES:
            raise ConfigError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")
        self.path = Path(path)
        if not self.path.is_dir():
            raise CacheError(f"cache folder {self.path} does not exist", hint="pass the --out of interp extract")
        self.manifest = Manifest.load(self.path, MANIFEST)
        if self.manifest.status != "complete" and not allow_incomplete:
            raise CacheError(f"{self.path} is an unfinished extraction ({len(self.manifest.shards)} shards so far)",
                             hint="finish it with interp extract --resume, or open with allow_incomplete=True")
        self.verify = verify
        # every listed shard (verify checks them all); rows come from shards 0, 1, ... up to the first one missing
        self.listed: list[ShardRecord] = sorted(self.manifest.shards, key=lambda s: s.index)
        if len({s.index for s in self.listed}) != len(self.listed):
            raise CacheError(f"{self.path} lists a shard twice", hint="the manifest is inconsistent; run interp "
                             "cache verify --repair, then interp extract --resume")
        prefix = next((k for k, s in enumerate(self.listed) if s.index != k), len(self.listed))
        if prefix < len(self.listed) and self.manifest.status == "complete":
            raise CacheError(f"{self.path} lists shards with gaps", hint="finish it with interp extract --resume")
        # an unfinished extraction with several writer threads (or ranks) lists shards out of order: read the
        # prefix that is contiguous now; later shards join it once the missing ones are written
        self.shards: list[ShardRecord] = self.listed[:prefix]
        end = 0
        for s in self.shards:  # shard k starts where shard k-1 ends
            if s.rows[0] != end:
                raise CacheError(f"{self.path} lists shard {s.index} at rows {list(s.rows)} after rows ending at "
                                 f"{end}", hint="the manifest is inconsistent; run interp cache verify")
            end = s.rows[1]
        self.offsets = np.cumsum([0] + [s.rows[1] - s.rows[0] for s in self.shards])
        self._checked: set[str] = set()
        self._maps: dict[str, np.ndarray] = {}
        self._consistent: set[tuple[str, int]] = set()  # (hook, shard) whose arrays match the manifest

    # ------------------------------------------------------------------------------------------ metadata
    @property
    def hooks(self) -> list[str]:
        return list(self.manifest.hooks)

    @property
    def n_rows(self) -> int:
        return int(self.offsets[-1])

    def __len__(self) -> int:
        return self.n_rows

    def spec(self, hook: str) -> dict:
        if hook not in self.manifest.hooks:
            raise CacheError(f"hook '{hook}' is not in this cache (it has: {', '.join(self.hooks)})",
                             hint="extract it with interp extract --hooks")
        return self.manifest.hooks[hook]

    def shape(self, hook: str) -> tuple[int, ...]:
        """Trailing shape of one row of `hook` (e.g. (d_model,))."""
        return tuple(self.spec(hook)["shape"])

    def __repr__(self) -> str:
        return f"CacheReader({self.path}, rows={self.n_rows:,}, hooks={self.hooks})"

    # ------------------------------------------------------------------------------------------ files
    def _open(self, shard: ShardRecord, name: str) -> np.ndarray:
        if name not in self._maps:
            if name not in shard.files:
                raise CacheCorruptError(f"shard {shard.index} of {self.path} does not list {name}",
                                        hint="the manifest is inconsistent; run interp cache verify")
            path = self.path / name
            if self.verify != "none" and name not in self._checked:
                check_file(path, shard.files[name], full=self.verify == "lazy")
                self._checked.add(name)
            self._maps[name] = open_npy(path)
        return self._maps[name]

    def shard_arrays(self, hook: str, index: int) -> dict[str, np.ndarray]:
        """The memory-mapped role arrays ({"data"}, or {"idx", "val"(, "crow")} for sparse formats) of shard
        `index` of `hook`, checked against the manifest: what format-aware readers (sparse, kernels) build on."""
        if not 0 <= index < len(self.shards):
            raise ConfigError(f"shard {index} is outside [0, {len(self.shards)})")
        return self._arrays(hook, self.shards[index])

    def _arrays(self, hook: str, shard: ShardRecord) -> dict[str, np.ndarray]:
        spec = self.spec(hook)
        fmt = get_format(spec["format"])
        out = {}
        for role in fmt.roles:
            stem = spec["file_stem"] if role == "data" else f"{spec['file_stem']}.{role}"
            out[role] = self._open(shard, shard_file(stem, shard.index))
        if fmt.check_arrays is not None and (hook, shard.index) not in self._consistent:
            try:
                fmt.check_arrays(out, spec, shard.rows[1] - shard.rows[0])
            except ValueError as e:
                raise CacheCorruptError(f"shard {shard.index} of hook {hook} in {self.path} {e}",
                                        hint=_MISMATCH) from None
            self._consistent.add((hook, shard.index))
        return out

    # ------------------------------------------------------------------------------------------ reading
    def read(self, hook: str, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Rows [start, stop) of `hook` as a tensor `[stop-start, *shape]` in the stored dtype."""
        stop = self.n_rows if stop is None else min(stop, self.n_rows)
        if not 0 <= start <= stop:
            raise ConfigError(f"row range [{start}, {stop}) is outside [0, {self.n_rows})")
        spec = self.spec(hook)
        fmt = get_format(spec["format"])
        parts = []
        first = int(np.searchsorted(self.offsets, start, side="right") - 1)
        for i in range(max(first, 0), len(self.shards)):
            lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
            if lo >= stop:
                break
            a, b = max(start, lo) - lo, min(stop, hi) - lo
            arrays = self._arrays(hook, self.shards[i])
            if fmt.decode_rows is not None:
                parts.append(fmt.decode_rows(arrays, spec, a, b))
            else:
                parts.append(fmt.decode(arrays, spec)[a:b])
        if not parts:
            from interp.cache.shards import STORAGE

            return torch.empty((0, *spec["shape"]), dtype=STORAGE[spec["dtype"]][0])
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def __getitem__(self, key: tuple[str, int | slice | np.ndarray | torch.Tensor]) -> torch.Tensor:
        """reader[hook, i], reader[hook, a:b] or reader[hook, index_array] (random access by row)."""
        hook, idx = key
        if (i := _scalar_row(idx)) is not None:
            j = i + self.n_rows if i < 0 else i  # reader[hook, -1] is the last row, as in Python
            if not 0 <= j < self.n_rows:
                raise ConfigError(f"row {i} is out of range [0, {self.n_rows})")
            return self.read(hook, j, j + 1)[0]
        if isinstance(idx, slice):
            if idx.step not in (None, 1):
                raise ConfigError("slices with a step are not supported", hint="read a range and slice the tensor")
            return self.read(hook, idx.start or 0, self.n_rows if idx.stop is None else idx.stop)
        return self.gather(hook, idx)

    def gather(self, hook: str, rows: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Arbitrary rows (any order, repeats allowed) as `[len(rows), *shape]`; a bool mask over all rows selects
        its True rows."""
        rows = rows.cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
        if rows.dtype == np.bool_:
            if rows.shape != (self.n_rows,):
                raise ConfigError(f"a row mask must have shape ({self.n_rows},), got {rows.shape}")
            rows = np.nonzero(rows)[0]
        if rows.ndim != 1 or not (rows.size == 0 or np.issubdtype(rows.dtype, np.integer)):
            raise ConfigError(f"row indices must be a 1-D integer array, got {rows.dtype} {rows.shape}",
                              hint="flatten them (rows.reshape(-1)) and reshape the result")
        rows = rows.astype(np.int64, copy=False)
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_rows):
            raise ConfigError(f"row index out of range [0, {self.n_rows})")
        spec = self.spec(hook)
        out = None
        shard_of = np.searchsorted(self.offsets, rows, side="right") - 1
        for i in np.unique(shard_of):
            sel = np.nonzero(shard_of == i)[0]
            local = rows[sel] - self.offsets[i]
            arrays = self._arrays(hook, self.shards[int(i)])
            fmt = get_format(spec["format"])
            if fmt.gather_rows is not None:  # only the asked rows leave the memory map (sparse ones included)
                part = fmt.gather_rows(arrays, spec, local)
            else:
                part = fmt.decode(arrays, spec)[torch.as_tensor(local)]
            if out is None:
                out = torch.empty((len(rows), *part.shape[1:]), dtype=part.dtype)
            out[torch.as_tensor(sel)] = part
        return out if out is not None else self.read(hook, 0, 0)

    @property
    def tokens(self) -> torch.Tensor:
        """LongTensor `[n_rows, 3]`: (token id, sequence index, position) of every row."""
        parts = []
        for s in self.shards:
            a = self._open(s, shard_file("tokens", s.index))
            if a.shape != (s.rows[1] - s.rows[0], 3) or a.dtype != np.dtype("<i8"):
                raise CacheCorruptError(f"tokens of shard {s.index} in {self.path} hold {a.dtype} {list(a.shape)}, "
                                        f"the manifest lists {s.rows[1] - s.rows[0]} rows of int64 triples",
                                        hint=_MISMATCH)
            parts.append(torch.from_numpy(np.array(a)))
        return torch.cat(parts) if parts else torch.empty((0, 3), dtype=torch.long)

    def token_rows(self, rows: np.ndarray) -> np.ndarray:
        """int64 `[len(rows), 3]` (token id, sequence, position) of arbitrary rows, read from the memory-mapped token
        sidecars of only the shards they fall in (`tokens` loads every row)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_rows):
            raise ConfigError(f"row index out of range [0, {self.n_rows})")
        out = np.empty((rows.size, 3), dtype=np.int64)
        shard_of = np.searchsorted(self.offsets, rows, side="right") - 1
        for i in np.unique(shard_of):
            s = self.shards[int(i)]
            a = self._open(s, shard_file("tokens", s.index))
            if a.shape != (s.rows[1] - s.rows[0], 3) or a.dtype != np.dtype("<i8"):
                raise CacheCorruptError(f"tokens of shard {s.index} in {self.path} hold {a.dtype} {list(a.shape)}",
                                        hint=_MISMATCH)
            sel = shard_of == i
            out[sel] = a[rows[sel] - self.offsets[i]]
        return out

    def iter_batches(self, hook: str, batch_size: int = 4096, start: int = 0, stop: int | None = None,
                     shuffle: bool = False, seed: int = 0, drop_last: bool = False, dtype: torch.dtype | None = None,
                     rank: int = 0, world: int = 1) -> Iterator[torch.Tensor]:
        """Batches `[batch_size, *shape]` over rows [start, stop). shuffle permutes rows with a seeded generator
        (one full pass, no repeats). rank/world split the batches for data-parallel reading."""
        if batch_size <= 0:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        stop = self.n_rows if stop is None else min(stop, self.n_rows)
        order = None
        if shuffle:
            order = np.random.default_rng(seed).permutation(np.arange(start, stop))
        for j, b0 in enumerate(range(start, stop, batch_size)):
            b1 = min(b0 + batch_size, stop)
            if drop_last and b1 - b0 < batch_size:
                return
            if j % world != rank:
                continue
            x = self.gather(hook, order[b0 - start: b1 - start]) if order is not None else self.read(hook, b0, b1)
            yield x if dtype is None else x.to(dtype)

    def activation_provider(self, hook: str, batch_size: int = 4096, seed: int = 0, epochs: int | None = None,
                            rank: int = 0, world: int = 1) -> Iterator[torch.Tensor]:
        """Endless (or `epochs`-long) shuffled float32 batches, the DataProvider sae-lens' SAETrainer takes.

        With world > 1 each rank gets `batch_size` rows of every global batch of world·batch_size rows of the shared
        seeded permutation (the same number of batches per epoch on every rank), reading only its own rows."""
        if world > 1 and self.n_rows < batch_size * world:
            raise ConfigError(f"{self.n_rows} rows are fewer than one global batch of {world} x {batch_size}",
                              hint="lower the batch size")
        per_epoch = self.n_rows // (batch_size * world)
        epoch = 0
        while epochs is None or epoch < epochs:
            batches = self.iter_batches(hook, batch_size, shuffle=True, seed=seed + epoch, drop_last=True,
                                        dtype=torch.float32, rank=rank, world=world)
            yield from (batches if world == 1 else itertools.islice(batches, per_epoch))
            epoch += 1

    def to_hf_dataset(self, hook: str, path: str | Path | None = None):
        """A `datasets.Dataset` in sae-lens' cached-activation layout: column `<hook>` as Array2D(ctx, d) and
        `token_ids`. Needs whole sequences (positions "all"). Saved with save_to_disk when `path` is given."""
        import datasets

        ctx = int(self.manifest.identity["ctx"])
        if self.manifest.layout.get("rows_per_block") != ctx:
            raise CacheError("to_hf_dataset needs every position of each sequence (positions 'all')",
                             hint="re-extract with --positions all")
        shape = self.shape(hook)
        if len(shape) != 1:
            raise CacheError(f"hook {hook} has rows of shape {shape}; sae-lens needs vectors")
        features = datasets.Features({
            hook: datasets.Array2D(shape=(ctx, shape[0]), dtype="float32"),
            "token_ids": datasets.Sequence(datasets.Value("int32"), length=ctx),
        })
        tokens = self.tokens[:, 0].view(-1, ctx)

        def rows():
            per = max(1, 65536 // ctx)
            for s0 in range(0, len(tokens), per):
                acts = self.read(hook, s0 * ctx, min(len(tokens), s0 + per) * ctx).float().view(-1, ctx, shape[0])
                for i in range(len(acts)):
                    yield {hook: acts[i].numpy(), "token_ids": tokens[s0 + i].to(torch.int32).numpy()}

        ds = datasets.Dataset.from_generator(rows, features=features)
        if path is not None:
            ds.save_to_disk(str(path))
        return ds

    # ------------------------------------------------------------------------------------------ checks
    def verify_shards(self) -> dict[int, list[str]]:
        """Check every file's size and checksum against the manifest: {shard index: problems} for bad shards."""
        bad: dict[int, list[str]] = {}
        for shard in self.listed:
            for name, record in shard.files.items():
                try:
                    check_file(self.path / name, record, full=True)
                except CacheCorruptError as e:
                    bad.setdefault(shard.index, []).append(e.message)
        return bad

    def verify_all(self) -> list[str]:
        """One line per problem found by verify_shards (empty = every file matches the manifest)."""
        return [line for lines in self.verify_shards().values() for line in lines]


def open_cache(path: str | Path, verify: str = "lazy", allow_incomplete: bool = False) -> CacheReader:
    """Open a cache folder for reading (see CacheReader)."""
    return CacheReader(path, verify=verify, allow_incomplete=allow_incomplete)


def _scalar_row(idx) -> int | None:
    """A Python/numpy integer or a 0-d integer array/tensor (argmax's result) as int; None for anything else."""
    if isinstance(idx, bool):
        return None
    if isinstance(idx, (int, np.integer)):
        return int(idx)
    if isinstance(idx, (np.ndarray, torch.Tensor)) and idx.ndim == 0:
        as_np = idx.cpu().numpy() if isinstance(idx, torch.Tensor) else idx
        return int(as_np) if np.issubdtype(as_np.dtype, np.integer) else None
    return None
