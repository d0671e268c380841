"""torchrun with gloo processes on CPU: the merged cache equals a single-process one bit for bit (one host, and two
simulated hosts), a killed rank resumes, and the distributed streaming regression equals the single-process one."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import pretokenize, run_cli, shard_digests, spawn_ranks
from interp.cache.lock import CacheLock

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}  # same threads per process in both runs


def _extract_args(model_dir, data, out, *extra):
    return ["extract", "--model", str(model_dir), "--data", str(data), "--out", str(out), "--ctx", "32",
            "--batch-size", "4", "--tokens", "4096", "--shard-mb", "0.01", "--quiet",
            "--hooks", "blocks.*.hook_resid_post", "blocks.1.mlp.hook_post", *extra]


def _torchrun(args):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "apps.cli",
           *args]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


@pytest.fixture(scope="module")
def single(tmp_path_factory, tiny_neox_dir, text_file):
    out = tmp_path_factory.mktemp("single") / "c"
    run_cli(*_extract_args(tiny_neox_dir, text_file, out), env=ENV)
    return out


@pytest.fixture(scope="module")
def tokens_npy(tmp_path_factory, tiny_neox_dir, text_file):
    """The same 4096 tokens, pre-tokenized once (what torchrun jobs read)."""
    return pretokenize(tiny_neox_dir, text_file, tmp_path_factory.mktemp("tok") / "tokens.npy", env=ENV)


def test_two_gloo_ranks_equal_single_process(tmp_path, tiny_neox_dir, tokens_npy, single):
    """The ranks read a pre-tokenized file of the same tokens (each reads only its own shards' blocks)."""
    from interp.cache import open_cache

    tokens = tokens_npy
    out = tmp_path / "dist"
    proc = _torchrun(_extract_args(tiny_neox_dir, tokens, out))
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log
    assert shard_digests(out) == shard_digests(single)
    a, b = open_cache(out), open_cache(single)
    assert a.n_rows == b.n_rows == 4096
    for hook in a.hooks:
        assert torch.equal(a.read(hook), b.read(hook))
    assert torch.equal(a.tokens, b.tokens)
    shards = json.loads((out / "manifest.json").read_text())["shards"]
    assert [s["index"] for s in shards] == list(range(len(shards)))


def test_killed_rank_resumes_identically(tmp_path, tiny_neox_dir, text_file, single):
    out = tmp_path / "killed"
    proc = _torchrun(_extract_args(tiny_neox_dir, text_file, out))
    deadline, killed = time.time() + 600, False
    while time.time() < deadline and proc.poll() is None:
        try:
            n = json.loads((out / "manifest.rank1.json").read_text())["n_shards"]
            pid = json.loads((out / ".lock.rank1").read_text())["pid"]
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
            continue
        if n >= 2:
            os.kill(pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.05)
    assert killed, "the run ended before rank 1 could be killed"
    proc.communicate(timeout=120)
    assert proc.returncode != 0 and not (out / "manifest.json").exists()
    resumed = _torchrun(_extract_args(tiny_neox_dir, text_file, out, "--resume"))
    log, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, log
    assert shard_digests(out) == shard_digests(single)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_hosts(args, run_id: str) -> None:
    """Start two torchrun agents (2 processes each) that meet at one c10d rendezvous endpoint; both must succeed."""
    endpoint = f"127.0.0.1:{_free_port()}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "2",
           "--rdzv_backend", "c10d", "--rdzv_endpoint", endpoint, "--rdzv_id", run_id, "-m", "apps.cli", *args]
    agents = [subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for _ in range(2)]
    logs = [a.communicate(timeout=300)[0] for a in agents]
    assert [a.returncode for a in agents] == [0, 0], "\n".join(logs)[-4000:]


def test_two_hosts_equal_single_process_and_overwrite(tmp_path, tiny_neox_dir, tokens_npy, single):
    """Two torchrun agents joined by c10d rendezvous, as on two hosts (simulated on one machine): 2 nodes x 2
    ranks, so LOCAL_RANK (0, 1 on each node) differs from RANK (0..3). Their cache equals a single process's bit
    for bit, and `--overwrite` of it under the same launch gives the same bytes again."""
    from interp.cache import open_cache

    out = tmp_path / "shared"  # the folder every "host" sees
    _two_hosts(_extract_args(tiny_neox_dir, tokens_npy, out), "first")
    want = shard_digests(single)
    assert len(want) > 8 and shard_digests(out) == want
    assert sorted(p.name for p in out.glob("manifest*")) == ["manifest.json"] + [f"manifest.rank{r}.json"
                                                                               for r in range(4)]
    assert open_cache(out).n_rows == open_cache(single).n_rows == 4096

    _two_hosts(_extract_args(tiny_neox_dir, tokens_npy, out, "--overwrite"), "second")
    assert shard_digests(out) == want
    assert not list(out.glob(".*.tmp"))


def _regression_worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    import torch.distributed as dist

    from interp.stats.lstsq import StreamingLstsq

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    X, Y = _regression_data()
    acc = StreamingLstsq(X.shape[1], Y.shape[1])
    for i, start in enumerate(range(0, len(X), 1000)):  # rank r takes batches r, r + world, ...
        if i % world == rank:
            acc.update(X[start:start + 1000], Y[start:start + 1000])
    sol = acc.all_reduce().solve()
    if rank == 0:
        torch.save({"W": sol.W, "b": sol.b}, out_file)
    dist.destroy_process_group()


def _regression_data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(20_000, 24, generator=g, dtype=torch.float64) * 3 + 1
    Y = X @ torch.randn(24, 8, generator=g, dtype=torch.float64) + 0.1 * torch.randn(20_000, 8, generator=g,
                                                                                       dtype=torch.float64) + 5
    return X.float(), Y.float()


def test_distributed_streaming_regression_equals_single(tmp_path):
    from interp.stats.lstsq import StreamingLstsq

    out = tmp_path / "sol.pt"
    spawn_ranks(_regression_worker, (2, str(tmp_path / "init"), str(out)))
    X, Y = _regression_data()
    ref = StreamingLstsq(X.shape[1], Y.shape[1])
    for start in range(0, len(X), 1000):
        ref.update(X[start:start + 1000], Y[start:start + 1000])
    sol = ref.solve()
    got = torch.load(out, weights_only=True)
    assert (got["W"] - sol.W).abs().max().item() < 1e-10
    assert (got["b"] - sol.b).abs().max().item() < 1e-10


def _ranks_in_turn(monkeypatch, cfg, world: int) -> dict[int, tuple[int, int]]:
    """Each rank of a `world`-rank extraction run one after another in this process (RANK/WORLD_SIZE, no process
    group, so barriers are no-ops); rank 0 last, as it merges. Returns rank -> (written, resumed)."""
    from interp.extract import extract

    out = {}
    for rank in [*range(1, world), 0]:
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", str(world))
        s = extract(cfg, progress=False)
        out[rank] = (s.shards_written, s.shards_resumed)
    return out


def _keep_first_shards(manifest: Path, keep: int) -> None:
    """What a kill leaves: the manifest lists only its first `keep` shards (the others' files may be there)."""
    doc = json.loads(manifest.read_text())
    doc["shards"], doc["status"] = doc["shards"][:keep], "in_progress"
    doc["n_shards"], doc["n_rows"] = keep, sum(s["rows"][1] - s["rows"][0] for s in doc["shards"])
    manifest.write_text(json.dumps(doc))


def test_resume_with_another_world_size_redoes_only_missing_shards(tmp_path, tiny_neox_dir, tokens_npy, monkeypatch):
    """Shards listed by any rank's manifest count as done whatever the new world size: 2 ranks killed with 2 shards
    listed each, resumed by 3 ranks and, separately, by one process, write only the missing shards, bit-identical."""
    import shutil

    from helpers import extract_config
    from interp.extract import extract

    kw = {"tokens": 1024, "ctx": 32, "batch_size": 4, "shard_mb": 0.01}
    ref = tmp_path / "ref"
    n = extract(extract_config(ref, tiny_neox_dir, tokens_npy, **kw), progress=False).n_shards
    two = tmp_path / "two"  # (in turn, rank 0 sees rank 1's cache: resume=True starts it or continues it)
    _ranks_in_turn(monkeypatch, extract_config(two, tiny_neox_dir, tokens_npy, resume=True, **kw), 2)
    (two / "manifest.json").unlink()
    for r in (0, 1):
        _keep_first_shards(two / f"manifest.rank{r}.json", 2)
    done = {s["index"] for r in (0, 1) for s in json.loads((two / f"manifest.rank{r}.json").read_text())["shards"]}
    assert 2 <= len(done) < n
    for world, name in ((3, "three"), (1, "one")):
        out = tmp_path / name
        shutil.copytree(two, out)
        counts = _ranks_in_turn(monkeypatch, extract_config(out, tiny_neox_dir, tokens_npy, resume=True, **kw), world)
        assert sum(w for w, _ in counts.values()) == n - len(done), (world, counts)
        assert shard_digests(out) == shard_digests(ref)
        assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


def _start_worker(rank: int, world: int, init_file: str, out: str, model_dir: str, data: str, report: str) -> None:
    """Extract under a 2-rank gloo group and write what happened (ok or the error's type and message)."""
    from datetime import timedelta

    import torch.distributed as dist

    from helpers import extract_config
    from interp.extract import extract

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=30))  # bounds the old behaviour (a wait at the barrier)
    try:
        extract(extract_config(out, model_dir, data, tokens=512), progress=False)
        Path(f"{report}.{rank}").write_text("ok")
    except Exception as e:  # noqa: BLE001 - the test reads it
        Path(f"{report}.{rank}").write_text(f"{type(e).__name__}: {e}")
    dist.destroy_process_group()


def test_a_rank_that_cannot_start_stops_every_rank(tmp_path, tiny_neox_dir, tokens_npy):
    """Rank 1 finds its lock held by a live process: it reports that, and rank 0 stops at once with an error naming
    rank 1 instead of waiting at the barrier until the process-group timeout (across hosts nothing else stops it).

    No clock is read: rank 0's error is the one that names rank 1's failure, which it can only report by not waiting
    (the old behaviour ends in the barrier's timeout error instead); the 30 s process-group timeout keeps a
    regression from hanging the suite."""
    out = tmp_path / "c"
    out.mkdir()
    with CacheLock(out, owner="rank1"):  # held by this (live) process, flock included
        spawn_ranks(_start_worker, (2, str(tmp_path / "init"), str(out), str(tiny_neox_dir), str(tokens_npy),
                                    str(tmp_path / "report")))
        listing = sorted(p.name for p in out.iterdir())
    reports = [(tmp_path / f"report.{r}").read_text() for r in (0, 1)]
    assert reports[1].startswith("CacheLockedError") and f"pid {os.getpid()}" in reports[1]
    assert reports[0].startswith("CacheError") and "rank(s) 1 failed" in reports[0], reports[0]
    assert listing == [".lock.rank1"]  # nothing written, the live lock kept
