"""The asynchronous shard protocol on the CPU: copies that land only at the fence, as CUDA's do.

`DeferredTransfers` hands out host buffers full of garbage and fills them only when the shard's fence is
synchronised. Extraction must then produce the same bytes as an eager run (so nothing is read before the fence),
and must launch shard k+1 before it lands shard k (the pipelining that keeps a GPU busy).
"""


import torch

import interp.shard_capture as shard_capture
from helpers import extract_config, shard_digests
from interp.cache.manifest import Manifest
from interp.extract import extract


class _Fence:
    def __init__(self, pending, log, index):
        self.pending, self.log, self.index = pending, log, index

    def synchronize(self):
        for dst, src in self.pending:
            dst.copy_(src)
        self.pending.clear()
        self.log.append(("land", self.index))


class DeferredTransfers(shard_capture.Transfers):
    def __init__(self, device, log):
        super().__init__(device)
        self.pending, self.log, self.launched = [], log, 0

    def download(self, x):
        src = x.contiguous().clone()
        garbage = torch.full_like(src, float("nan")) if src.is_floating_point() else torch.zeros_like(src)
        self.pending.append((garbage, src))
        return garbage

    def fence(self):
        fence = _Fence(self.pending, self.log, self.launched)
        self.log.append(("launch", self.launched))
        self.pending, self.launched = [], self.launched + 1
        return fence


def test_rows_are_read_only_after_the_fence_and_shards_overlap(tmp_path, tiny_neox_dir, text_file, monkeypatch):
    kw = {"tokens": 1024, "batch_size": 4, "hooks": ["blocks.*.hook_resid_post", "blocks.0.attn.hook_z"]}
    extract(extract_config(tmp_path / "eager", tiny_neox_dir, text_file, **kw), progress=False)
    log: list[tuple[str, int]] = []
    transfers = {}

    def deferred(device):
        return transfers.setdefault("t", DeferredTransfers(device, log))

    monkeypatch.setattr(shard_capture, "transfers_for", deferred)
    extract(extract_config(tmp_path / "deferred", tiny_neox_dir, text_file, **kw), progress=False)
    assert shard_digests(tmp_path / "deferred") == shard_digests(tmp_path / "eager")
    n = len(Manifest.load(tmp_path / "eager").shards)
    assert n >= 3
    # launch 0, launch 1, land 0, launch 2, land 1, ..., land n-1
    expected = [("launch", 0)] + [e for k in range(1, n) for e in (("launch", k), ("land", k - 1))] + [("land", n - 1)]
    assert log == expected


def test_a_landed_shard_lets_go_of_its_rows(tmp_path, tiny_neox_dir, text_file, monkeypatch):
    """While `submit` waits for the writer, the landed shard holds only its encoded arrays, not also its per-batch
    rows (which would add a shard to the memory bound); the files are unchanged."""
    import interp.extract as extract_mod

    kw = {"tokens": 512, "batch_size": 4}
    extract(extract_config(tmp_path / "a", tiny_neox_dir, text_file, **kw), progress=False)
    landed = []

    def land(shard, *args, **kwargs):
        arrays = shard_capture.land_shard(shard, *args, **kwargs)
        landed.append((sum(len(c) for c in shard.rows.values()), len(shard.token_rows)))
        return arrays

    monkeypatch.setattr(extract_mod, "land_shard", land)
    extract(extract_config(tmp_path / "b", tiny_neox_dir, text_file, **kw), progress=False)
    assert landed and all(n == (0, 0) for n in landed)
    assert shard_digests(tmp_path / "b") == shard_digests(tmp_path / "a")
