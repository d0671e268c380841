"""Stream sparse shards larger than GPU memory: pinned host buffers, a copy stream, and events that overlap
host-to-device copies of batch i+1 with the kernels on batch i."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

from interp.kernels.types import SparseActs


class _Slot:
    """One staging slot: pinned host tensors and the event that guards their reuse."""

    def __init__(self) -> None:
        self.host: dict[str, Tensor] = {}
        self.copied: torch.cuda.Event | None = None  # H2D finished (host buffer reusable, device data ready)

    def pinned(self, name: str, src: Tensor) -> Tensor:
        """A pinned buffer view with src's shape/dtype (grown when too small); src copied in unless already pinned."""
        if src.is_pinned():
            return src
        buf = self.host.get(name)
        if buf is None or buf.dtype != src.dtype or buf.numel() < src.numel():
            buf = torch.empty(src.numel(), dtype=src.dtype, pin_memory=True)
            self.host[name] = buf
        view = buf[: src.numel()].view(src.shape)
        view.copy_(src)
        return view


def stream_to_device(batches: Iterable[SparseActs], device: str | torch.device = "cuda",
                     n_slots: int = 2) -> Iterator[SparseActs]:
    """Yield each CPU batch on `device`; the copy of the next batch runs on a side stream while you compute.

    Work you launch on the current stream for a yielded batch is ordered after its copy; do not keep a
    yielded batch past the next iteration (its device memory is reused after n_slots batches).
    On a CPU device the batches are yielded unchanged.
    """
    device = torch.device(device)
    if device.type != "cuda":
        yield from batches
        return
    copy_stream = torch.cuda.Stream(device)
    compute = torch.cuda.current_stream(device)
    slots = [_Slot() for _ in range(max(2, n_slots))]
    pending: deque[tuple[_Slot, SparseActs]] = deque()
    it = iter(batches)
    counter = 0

    def issue() -> None:
        nonlocal counter
        b = next(it, None)
        if b is None:
            return
        slot = slots[counter % len(slots)]
        counter += 1
        if slot.copied is not None:
            slot.copied.synchronize()  # the previous H2D out of this slot's pinned buffers has finished
        names = {"idx": b.idx, "val": b.val, "crow": b.crow, "token_index": b.token_index}
        host = {n: slot.pinned(n, t) for n, t in names.items() if t is not None}
        with torch.cuda.stream(copy_stream):
            dev = {n: t.to(device, non_blocking=True) for n, t in host.items()}
            slot.copied = torch.cuda.Event()
            slot.copied.record(copy_stream)
        for t in dev.values():
            t.record_stream(compute)  # the caching allocator must not recycle it before compute is done
        pending.append((slot, SparseActs(dev["idx"], dev["val"], b.d_sae, dev.get("crow"), dev.get("token_index"))))

    for _ in range(len(slots) - 1):
        issue()
    while pending:
        issue()  # prefetch the next batch before handing out this one
        slot, dev_batch = pending.popleft()
        compute.wait_event(slot.copied)
        yield dev_batch
