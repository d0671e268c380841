"""One shard of an extraction in two steps, so that the device never waits for the host.

`launch_shard` queues a shard's forward passes, NaN/inf checks and copies to host memory without waiting for any
of them (on CUDA the copies go to pinned memory, asynchronously). `land_shard` waits for them, checks and encodes
the rows. Extraction launches shard k+1 before it lands shard k, so the GPU computes the next shard while the host
encodes and hands over the last one. On the CPU both steps run eagerly and the result is the same bytes.

A sparse hook (top-k or CSR, of the activations or of an SAE's latents) is encoded and selected where the model
runs: the SAE's matmul and the top-k run on the GPU, and only the kept ids and values are copied to the host
(256 bytes a token at k = 64, instead of the dense row). GPU arithmetic differs from the host's in the last bits,
so extraction records where it encoded ("encode_device" in the hook's spec) and a resume cannot mix the two.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from interp.cache.formats import get as get_format
from interp.cache.shards import STORAGE, shard_file
from interp.encode import encode_rows
from interp.errors import CacheError
from interp.models import input_device


class Transfers:
    """Host <-> device copies for one shard, eager: what the CPU (and any non-CUDA device) uses.

    `upload` puts the shard's tokens on the device, `download` starts a copy of a result to the host and
    `fence` returns what `land_shard` waits on before it reads the copies (None: nothing to wait for).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def upload(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.to(self.device)

    def download(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous().to("cpu")  # contiguous: a view (positions "last") would keep the whole batch alive

    def fence(self):
        return None


class CudaTransfers(Transfers):
    """Asynchronous copies through pinned memory. A blocking host-to-device copy synchronises the stream, so it
    would wait for the kernels of the shard before; the fence is an event after this shard's copies."""

    def upload(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.pin_memory().to(self.device, non_blocking=True)

    def download(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous().to("cpu", non_blocking=True)  # lands in pinned memory; valid after the fence

    def fence(self) -> torch.cuda.Event:
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))  # the model's GPU, not necessarily the current one
        return event


def transfers_for(device: torch.device) -> Transfers:
    return CudaTransfers(device) if device.type == "cuda" else Transfers(device)


@dataclass
class InFlightShard:
    """A launched shard: host tensors that are valid once `ready` has been synchronised (at once if None)."""

    index: int
    block_start: int
    tokens: torch.Tensor  # [n_blocks, ctx] token ids of the shard (host)
    batch_size: int
    rows: dict[str, list]  # hook -> one host tensor per batch (a sparse hook: {role: tensor}, selected on the device)
    token_rows: list[torch.Tensor]  # per batch: [n_rows, 3] (token id, sequence, position)
    checks: list[tuple[str, int, int]] = field(default_factory=list)  # (hook, batch start, chunk) per finite flag
    finite: torch.Tensor | None = None  # bool [len(checks)] on the host, valid once `ready` has been synchronised
    row_codes: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)  # (hook, chunk) of a selected
    # hook -> int8 per row: 2 = NaN, 1 = inf (its dense rows never reach the host; this names the bad row)
    ready: object | None = None  # anything with .synchronize() (a CUDA event)
    launch_seconds: float = 0.0


def launch_shard(capturer, tokens: torch.Tensor, batch_size: int, index: int, block_start: int,
                 seq_all: torch.Tensor, pos_all: torch.Tensor, transfers: Transfers | None = None,
                 specs: dict[str, dict] | None = None) -> InFlightShard:
    """Queue the forward passes of one shard and the copies of its activations to the host; does not wait. Hooks
    whose spec names a format with a device-side selection (sparse formats) are encoded and selected on the
    device; the others are copied as they are and encoded when the shard lands."""
    t = time.perf_counter()
    transfers = transfers or transfers_for(input_device(capturer.model))
    shard = InFlightShard(index, block_start, tokens, batch_size, {n: [] for n in capturer.names}, [])
    flags = []
    on_device = transfers.upload(tokens)
    for b0 in range(0, len(tokens), batch_size):
        batch = tokens[b0: b0 + batch_size]
        for name, x in capturer(on_device[b0: b0 + batch_size]).items():
            chunk = len(shard.rows[name])
            select = _selector(specs, name)
            if x.is_floating_point():  # checked on the device; read once the shard lands
                flags.append(torch.isfinite(x).all())
                shard.checks.append((name, b0, chunk))
                if select is not None:
                    shard.row_codes[(name, chunk)] = transfers.download(_row_codes(x))
            if select is None:
                shard.rows[name].append(transfers.download(x))
            else:
                spec = specs[name]
                parts = select(encode_rows(x, spec), spec)
                parts["val"] = parts["val"].to(STORAGE[spec["dtype"]][0])  # copied in the stored dtype
                shard.rows[name].append({role: transfers.download(t) for role, t in parts.items()})
        n = len(batch)
        seq, pos = (seq_all, pos_all) if n == batch_size else capturer.positions.index(n, batch.shape[1])
        keep = seq < n
        seq, pos = seq[keep], pos[keep]
        shard.token_rows.append(torch.stack([batch[seq, pos], seq + block_start + b0, pos], dim=1))
    if flags:
        shard.finite = transfers.download(torch.stack(flags))
    shard.ready = transfers.fence()
    shard.launch_seconds = time.perf_counter() - t
    return shard


def land_shard(shard: InFlightShard, specs: dict[str, dict], positions, timings: dict | None = None
               ) -> dict[str, np.ndarray]:
    """Wait for a launched shard, refuse NaN/inf (naming hook, sequence and position) and encode its files."""
    t = time.perf_counter()
    if shard.ready is not None:
        shard.ready.synchronize()
    if shard.finite is not None and not bool(shard.finite.all()):
        name, b0, chunk = shard.checks[int((~shard.finite).nonzero()[0])]
        codes = shard.row_codes.get((name, chunk))
        _raise_non_finite(name, _row_codes(shard.rows[name][chunk]) if codes is None else codes,
                          shard.tokens[b0: b0 + shard.batch_size], shard.block_start + b0, positions)
    t1 = time.perf_counter()
    arrays = shard_arrays(shard.rows, specs, shard.index)  # empties shard.rows as it goes (memory bound)
    arrays[shard_file("tokens", shard.index)] = torch.cat(shard.token_rows).numpy().astype(np.int64)
    shard.token_rows = []
    if timings is not None:
        timings["capture"] += shard.launch_seconds + t1 - t
        timings["encode"] += time.perf_counter() - t1
    return arrays


def shard_arrays(rows: dict[str, list], specs: dict[str, dict], index: int) -> dict[str, np.ndarray]:
    """Each hook's rows encoded in its cache format: shard file name -> array. Batches selected on the device are
    only packed; otherwise an SAE named by the spec turns the rows into its latents first (`encode_rows`), so the
    format sees only tensors. Takes the rows out of `rows` hook by hook, so that a hook's batches are freed once
    they are joined: a shard is held twice only one hook at a time."""
    arrays = {}
    for hook in list(rows):
        spec, chunks = specs[hook], rows.pop(hook)
        fmt = get_format(spec["format"])
        if chunks and isinstance(chunks[0], dict):
            encoded = fmt.pack(chunks, spec)
        else:
            x = chunks[0] if len(chunks) == 1 else torch.cat(chunks)  # one batch per shard: no copy
            encoded = fmt.encode(encode_rows(x, spec), spec)
        del chunks
        for role, arr in encoded.items():
            stem = spec["file_stem"] if role == "data" else f"{spec['file_stem']}.{role}"
            arrays[shard_file(stem, index)] = arr
    return arrays


def _selector(specs: dict[str, dict] | None, hook: str):
    """The device-side selection of the hook's format (None: the rows are copied as they are)."""
    spec = (specs or {}).get(hook)
    return get_format(spec["format"]).select if spec else None


def _row_codes(x: torch.Tensor) -> torch.Tensor:
    """Per row of `x`: 2 where it holds a NaN, 1 where an inf (and no NaN), 0 where it is finite."""
    flat = x.reshape(len(x), -1)
    return torch.where(torch.isnan(flat).any(1), 2, torch.isinf(flat).any(1).to(torch.int64)).to(torch.int8)


def _raise_non_finite(hook, codes, batch, first_block, positions) -> None:
    """NaN/inf in captured activations: name the hook, sequence and position instead of caching them silently."""
    bad_row = int(codes.nonzero()[0])
    seq, pos = positions.index(*batch.shape)
    kind = "NaN" if int(codes[bad_row]) == 2 else "inf"
    raise CacheError(f"{kind} in {hook} at sequence {first_block + int(seq[bad_row])}, position {int(pos[bad_row])} "
                     f"(token id {int(batch[seq[bad_row], pos[bad_row]])}); nothing of this shard was written",
                     hint="check the model's weights and dtype (float16 overflow?); earlier shards stay valid")
