"""Streaming extraction: token source -> model -> hooks -> sharded on-disk cache, resumable and bounded in memory.

Blocks of `ctx` tokens are grouped into shards of `blocks_per_shard` blocks (a multiple of the batch size, so a
resumed run sees exactly the same batches and writes bit-identical shards). Shard k goes to rank k % world; with
a pre-tokenized `.npy` source a rank reads only its own shards' blocks (text is tokenized in order by every rank).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from interp import distributed, extract_folder
from interp.cache.formats import get as get_format
from interp.cache.lock import CacheLock
from interp.cache.manifest import MANIFEST, Manifest
from interp.cache.shards import STORAGE, dtype_name, file_stem, open_npy, shard_file
from interp.cache.writer import ShardWriter, default_writer_threads
from interp.capture import Capturer
from interp.config_checks import check_context, check_device
from interp.encode import check_format_hooks, check_sae_width, with_encode_device
from interp.errors import CacheError, ConfigError, InterpError
from interp.fileio import remove_empty_folders
from interp.models import DEFAULT_MODEL, WEIGHT_DTYPES, input_device, load, model_id
from interp.positions import Positions
from interp.provenance import environment
from interp.shard_capture import InFlightShard, land_shard, launch_shard
from interp.sources import BlockReader, added_specials, describe_source


@dataclass
class ExtractConfig:
    """Everything that determines a cache's contents (plus how to run: device, resume, overwrite)."""

    out: str
    model: str = DEFAULT_MODEL
    checkpoint: int | None = None
    hooks: list[str] = field(default_factory=lambda: ["blocks.*.hook_resid_post"])
    data: str = "embedded"
    text_column: str = "text"
    tokens: int = 65_536
    ctx: int = 128
    batch_size: int = 32
    dtype: str = "float32"
    positions: str = "all"
    prepend_bos: bool = False
    shard_mb: float = 64.0
    device: str = "cpu"
    resume: bool = False
    overwrite: bool = False
    max_pending: int = 2  # shards queued for the writer before capture waits
    writer_threads: int = 0  # shard-file writer threads; 0: auto (CPU: cores/4 up to 4; CUDA: cores-4 up to 12)
    formats: dict[str, dict] = field(default_factory=dict)  # hook -> {"format": "topk", ...}; default dense
    model_dtype: str = "float32"  # the weights' dtype at load time (dtype above is the cache's)
    device_map: str | None = None  # "auto": place a natively run folder with accelerate (offloading what won't fit)
    max_memory: dict | None = None  # with device_map: {"cpu": "2GiB", 0: "20GiB"}


@dataclass
class ExtractSummary:
    out: str
    n_tokens: int
    n_rows: int
    n_shards: int
    bytes: int
    seconds: float
    tokens_per_s: float
    shards_written: int
    shards_resumed: int
    # wall seconds by phase of this rank's run: "setup" (model, hooks, lock, folder checks), "probe" (the one-block
    # forward pass that fixes the shard layout; it pays the first-call CUDA/cuBLAS costs), "capture" (forward
    # passes, host copies, NaN checks), "encode", "writer_wait" (submit blocked on a full writer queue), "drain"
    # (last shards reaching disk), "finish" (manifest, barrier and merge under torchrun), "other" (reading
    # this rank's token blocks; skipping other ranks' text blocks)
    timings: dict[str, float] = field(default_factory=dict)
    rank: int = 0  # under torchrun, shards_written, shards_resumed and tokens_per_s are this rank's
    world: int = 1

    def line(self) -> str:
        mine = f" by rank {self.rank} of {self.world}" if self.world > 1 else ""
        return (f"{self.n_tokens:,} tokens, {self.n_rows:,} rows, {self.n_shards} shards "
                f"({self.shards_written} written{mine}, {self.shards_resumed} resumed), {self.bytes / 2**20:.1f} MiB,"
                f" {self.tokens_per_s:,.0f} tokens/s{mine} -> {self.out}")


def _validate(cfg: ExtractConfig) -> None:
    for name in ("tokens", "ctx", "batch_size"):
        if int(getattr(cfg, name)) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}")
    if cfg.tokens < cfg.ctx:
        raise ConfigError(f"--tokens {cfg.tokens} is less than one block of --ctx {cfg.ctx}",
                          hint="ask for at least ctx tokens")
    if cfg.resume and cfg.overwrite:
        raise ConfigError("--resume and --overwrite contradict each other", hint="pass one of them")
    if cfg.shard_mb <= 0:
        raise ConfigError("--shard-mb must be positive")
    if isinstance(cfg.device, str):
        check_device(cfg.device)
    if int(cfg.writer_threads) < 0:
        raise ConfigError(f"--writer-threads must be 0 (automatic) or more, got {cfg.writer_threads}")
    try:
        floating = STORAGE[dtype_name(cfg.dtype)][0].is_floating_point
    except CacheError:
        raise ConfigError(f"unknown --dtype {cfg.dtype}", hint="use float32, bfloat16 or float16") from None
    if not floating:  # would truncate or wrap activations silently
        raise ConfigError(f"--dtype {cfg.dtype} cannot hold activations", hint="use float32, bfloat16 or float16")
    if str(cfg.model_dtype) not in WEIGHT_DTYPES:
        raise ConfigError(f"unknown --model-dtype {cfg.model_dtype}", hint=f"use one of {', '.join(WEIGHT_DTYPES)}")


def preflight(cfg: ExtractConfig) -> Positions:
    """Every check that needs only the options and the output folder (sizes, dtypes, positions, an existing cache
    without --resume/--overwrite, a folder interp did not write); callers that load a model themselves run it
    first. Returns the parsed positions."""
    _validate(cfg)
    positions = Positions.parse(cfg.positions)
    if positions.kind == "mask":
        raise ConfigError("extraction takes position specs (all, last, drop:K, range:A:B), not masks")
    if not bool(positions.row_mask(1, cfg.ctx).any()):  # before the model loads or --out is created
        raise ConfigError(f"--positions {positions.spec()} selects no position of a block of --ctx {cfg.ctx} tokens",
                          hint=f"select positions below {cfg.ctx} (e.g. drop:1), or raise --ctx")
    check_format_hooks(cfg.formats)  # a transcoder's latents at its output hook
    extract_folder.check_out(Path(cfg.out), cfg.resume, cfg.overwrite)
    return positions


def extract(cfg: ExtractConfig, model: torch.nn.Module | None = None, progress: bool = True,
            tokenizer=None) -> ExtractSummary:
    """Run one extraction (or resume it) and return its summary. Raises InterpError subclasses on bad input.

    `model` replaces loading `cfg.model` (any model `interp.models.load` returns, or your own nn.Module);
    `tokenizer` is used where given, else the model's `.tokenizer`. Every check that needs only the flags and the
    output folder runs before the model is loaded.
    """
    t_start = time.perf_counter()
    positions = preflight(cfg)  # before the model loads: a refusal here takes no time
    rank, world = distributed.rank_world()
    out = Path(cfg.out)
    dtype = dtype_name(cfg.dtype)
    device = distributed.local_device(cfg.device)
    if model is None:
        model = load(cfg.model, cfg.checkpoint, device=device, dtype=cfg.model_dtype, device_map=cfg.device_map,
                     max_memory=cfg.max_memory)
    capturer = Capturer(model, cfg.hooks, positions=positions, dtype=STORAGE[dtype][0], flatten=True)
    cfg = replace(cfg, formats=with_encode_device(cfg.formats, input_device(model)))  # sparse hooks: where encoded
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ConfigError(f"model {model_id(model)} has no tokenizer",
                          hint="pass extract(cfg, model=m, tokenizer=tok), or return (model, tokenizer) from a "
                               "--model module:factory")

    check_context(model, cfg.ctx, "--ctx")
    rows_per_block = int(positions.row_mask(1, cfg.ctx).sum())
    n_blocks = cfg.tokens // cfg.ctx
    identity = {
        "model": model_id(model), "model_source": cfg.model if isinstance(cfg.model, str) else model_id(model),
        "checkpoint": cfg.checkpoint, "hooks": capturer.names, "data": describe_source(cfg.data),
        "text_column": cfg.text_column, "n_blocks": n_blocks, "ctx": cfg.ctx, "batch_size": cfg.batch_size,
        "dtype": dtype, "positions": positions.spec(), "prepend_bos": cfg.prepend_bos,
        "formats": {h: cfg.formats.get(h, {"format": "dense"}) for h in capturer.names},
        "shard_mb": cfg.shard_mb,
    }
    if WEIGHT_DTYPES[str(cfg.model_dtype)] != torch.float32:  # other weights, other activations
        identity["model_dtype"] = str(WEIGHT_DTYPES[str(cfg.model_dtype)]).removeprefix("torch.")
    specials = added_specials(cfg.data, tokenizer, cfg.prepend_bos)
    if specials:  # what the tokenizer adds to every block (absent where nothing is: the embedded default)
        identity["special_tokens"] = specials
    manifest_name = MANIFEST if world == 1 else f"manifest.rank{rank}.json"
    created = [p for p in (out, *out.parents) if not p.exists()]  # the folders mkdir makes: a failed run removes
    out.mkdir(parents=True, exist_ok=True)  # those it leaves empty, nothing else
    lock = CacheLock(out, owner="" if world == 1 else f"rank{rank}")
    failure: InterpError | None = None
    try:
        lock.acquire()
        old, wipe = extract_folder.prepare(out, cfg.resume, cfg.overwrite, identity, manifest_name)
    except InterpError as e:  # a held lock, a resume that does not match: every rank stops, none waits forever
        failure = e
    try:
        distributed.agree(failure)  # every rank has looked at the folder before anything in it is removed
        if rank == 0:
            extract_folder.clear(out, wipe)
        distributed.barrier()  # and nothing is written before the removal is over
        setup = time.perf_counter() - t_start  # model, hooks, lock, folder checks, first barrier
        summary = _run(cfg, model, capturer, tokenizer, out, identity, old, manifest_name, rank, world, dtype,
                       rows_per_block, n_blocks, progress)
        summary.timings = {"setup": round(setup, 4), **summary.timings}
        created = []  # the run succeeded: the folders stay
        return summary
    finally:
        lock.release()
        remove_empty_folders(created)


def _run(cfg, model, capturer, tokenizer, out, identity, old, manifest_name, rank, world, dtype, rows_per_block,
         n_blocks, progress) -> ExtractSummary:
    t0 = time.perf_counter()
    reader = BlockReader(cfg.data, tokenizer, cfg.ctx, n_blocks, cfg.text_column, cfg.prepend_bos)
    if reader.available is not None and reader.available < n_blocks:  # a token file: refuse before any work
        _ran_out(reader.available, n_blocks, cfg.ctx)
    done = {s.index: s for s in old.shards} if old else {}
    manifest = old or Manifest(identity=identity, hooks={}, layout={}, environment=environment())
    specs: dict[str, dict] = dict(manifest.hooks)
    writer = ShardWriter(out, manifest, manifest_name, max_pending=cfg.max_pending,
                         threads=cfg.writer_threads or default_writer_threads(str(input_device(model))))
    seq_all, pos_all = capturer.positions.index(cfg.batch_size, cfg.ctx)
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_blocks * cfg.ctx, unit="tok", unit_scale=True, desc="extract", dynamic_ncols=True)
    written = resumed = 0
    timings = dict.fromkeys(("probe", "capture", "encode", "writer_wait", "drain", "finish", "other"), 0.0)
    blocks_per_shard = manifest.layout.get("blocks_per_shard")
    stopped = True  # until the loop below finishes
    try:
        head = reader.take(0)  # blocks read ahead of their shard: the first batch, when it decides the layout
        if blocks_per_shard is None:  # first batch decides the shard size from the activation widths
            head = reader.take(min(cfg.batch_size, n_blocks))
            if len(head) < min(cfg.batch_size, n_blocks):
                _ran_out(len(head), n_blocks, cfg.ctx)
            t = time.perf_counter()
            specs, blocks_per_shard = _layout(cfg, capturer, specs, head, rows_per_block, dtype, n_blocks)
            timings["probe"] = time.perf_counter() - t
            manifest.hooks, manifest.layout = specs, {"blocks_per_shard": blocks_per_shard,
                                                      "rows_per_block": rows_per_block}
            if not manifest.shards:  # claim the folder before the first shard lands: a kill between that
                manifest.save(out, manifest_name)  # shard and its listing must still leave a resumable cache
        last_done = max(done, default=None)
        in_flight = None  # the launched shard not yet handed to the writer
        for k, block_start in enumerate(range(0, n_blocks, blocks_per_shard)):
            block_stop = min(block_start + blocks_per_shard, n_blocks)
            mine = k % world == rank and k not in done
            if mine or k == last_done:  # other ranks' shards (and verified done ones) are skipped, not read
                shard = torch.cat((head, reader.take(block_stop - block_start - len(head))))
                got = len(shard)
            else:
                got = len(head) + reader.skip(block_stop - block_start - len(head))
            head = head[:0]
            if got < block_stop - block_start:
                written += _submit(in_flight, writer, specs, capturer.positions, rows_per_block, timings)
                _ran_out(block_start + got, n_blocks, cfg.ctx)
            if k == last_done:
                _check_resumed_tokens(out, done[k], shard, capturer.positions)
            if k in done:
                resumed += 1
            elif mine:  # launch this shard, then land the previous one while the device computes this one
                launched = launch_shard(capturer, shard, cfg.batch_size, k, block_start, seq_all, pos_all,
                                        specs=specs)
                written += _submit(in_flight, writer, specs, capturer.positions, rows_per_block, timings)
                in_flight = launched
            if bar is not None:
                bar.update((block_stop - block_start) * cfg.ctx)
        written += _submit(in_flight, writer, specs, capturer.positions, rows_per_block, timings)
        stopped = False
    finally:
        if bar is not None:
            bar.close()
        t = time.perf_counter()
        try:
            writer.close()  # waits for the queued shards: what was captured before a stop is kept
        except Exception:
            if not stopped:
                raise  # otherwise the error that stopped the loop (Ctrl-C included) is the one to report
        timings["drain"] = time.perf_counter() - t
    seconds = time.perf_counter() - t0
    timings["other"] = max(0.0, seconds - sum(v for k, v in timings.items() if k not in ("finish", "other")))
    t = time.perf_counter()
    _finish(out, manifest, manifest_name, rank, world, n_blocks, cfg, seconds, written, timings)
    timings["finish"] = time.perf_counter() - t
    final = Manifest.load(out) if (out / MANIFEST).is_file() else manifest
    total = sum(f["bytes"] for s in final.shards for f in s.files.values())
    return ExtractSummary(str(out), n_blocks * cfg.ctx, final.n_rows, len(final.shards), total, seconds,
                          written * (blocks_per_shard or 0) * cfg.ctx / max(seconds, 1e-9), written, resumed,
                          {k: round(v, 4) for k, v in timings.items()}, rank, world)


def _submit(shard: InFlightShard | None, writer, specs, positions, rows_per_block, timings) -> int:
    """Land a launched shard and queue its files for the writer; 1 if there was one."""
    if shard is None:
        return 0
    arrays = land_shard(shard, specs, positions, timings)
    t = time.perf_counter()
    stop = shard.block_start + len(shard.tokens)
    writer.submit(shard.index, (shard.block_start * rows_per_block, stop * rows_per_block), (shard.block_start, stop),
                  arrays)
    timings["writer_wait"] += time.perf_counter() - t
    return 1


def _ran_out(have_blocks: int, n_blocks: int, ctx: int) -> None:
    raise CacheError(f"the token source ran out after {have_blocks * ctx:,} of {n_blocks * ctx:,} tokens",
                     hint=f"pass --tokens {have_blocks * ctx} or a larger source" if have_blocks
                     else "use a larger source or a smaller --ctx")


def _layout(cfg, capturer, specs, first_batch, rows_per_block, dtype, n_blocks):
    """Hook specs (shape, dtype, format, file stem) and blocks per shard, from one probe batch."""
    probe = capturer(first_batch[:1].to(input_device(capturer.model)))
    bytes_per_row = 0
    for name, x in probe.items():
        fmt = dict(cfg.formats.get(name, {"format": "dense"}))
        get_format(fmt["format"])  # an unknown format is refused here, before any shard (or manifest) is written
        check_sae_width(name, tuple(x.shape[1:]), fmt)
        specs[name] = {"shape": list(x.shape[1:]), "dtype": dtype, "file_stem": file_stem(name), **fmt}
        bytes_per_row += int(np.prod(x.shape[1:])) * STORAGE[dtype][1].itemsize
    per_block = max(1, bytes_per_row * rows_per_block)
    batches = max(1, int(cfg.shard_mb * 2**20 // (per_block * cfg.batch_size)))
    return specs, min(batches * cfg.batch_size, max(n_blocks, 1))


def _check_resumed_tokens(out, record, shard, positions) -> None:
    """The last shard of an interrupted run must hold the tokens the source yields now (same data, same order)."""
    stored = open_npy(out / shard_file("tokens", record.index))
    seq, pos = positions.index(*shard.shape)
    if not np.array_equal(np.asarray(stored[:, 0]), shard[seq, pos].numpy()):
        raise CacheError(f"cannot resume {out}: the token source yields different tokens than when the cache started",
                         hint="restore the original data, or pass --overwrite")


def _finish(out, manifest, manifest_name, rank, world, n_blocks, cfg, seconds, written, timings=None) -> None:
    """Mark the cache complete; under torchrun rank 0 merges the per-rank manifests after a barrier."""
    manifest.summary = {"n_tokens": n_blocks * cfg.ctx, "seconds_last_run": round(seconds, 3),
                        "shards_written_last_run": written, "config": asdict(cfg),
                        "timings_last_run": {k: round(v, 3) for k, v in (timings or {}).items() if k != "finish"}}
    if world == 1:
        manifest.status = "complete"
        manifest.save(out, manifest_name)
        return
    manifest.save(out, manifest_name)
    distributed.barrier()
    if rank == 0:
        merged = _merge_rank_manifests(out, world, n_blocks * manifest.layout["rows_per_block"])
        merged.status = "complete"
        merged.save(out, MANIFEST)
    distributed.barrier()


def _merge_rank_manifests(out: Path, world: int, rows: int, wait_s: float = 60.0) -> Manifest:
    """Rank 0's union of every rank's shard list. On a network file system another host's last manifest write
    can take a moment to show here after the barrier, so an incomplete union is re-read for up to `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            merged = extract_folder.union(Manifest.load(out, "manifest.rank0.json"),
                            [Manifest.load(out, f"manifest.rank{r}.json") for r in range(1, world)])
            problem = None if merged.n_rows == rows else f"merged cache has {merged.n_rows} rows, expected {rows}"
        except CacheError as e:  # a rank's manifest not visible yet, or caught mid-replace
            problem = str(e)
        if problem is None:
            return merged
        if time.monotonic() > deadline:
            raise CacheError(problem, hint="rerun the same command with --resume")
        time.sleep(0.25)
