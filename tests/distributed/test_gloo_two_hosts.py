"""Two torchrun agents joined by c10d rendezvous, as on two hosts (simulated on one machine): 2 nodes x 2 ranks,
so LOCAL_RANK (0, 1 on each node) differs from RANK (0..3). The cache equals a single-process one bit for bit,
and `--overwrite` of that cache under the same launch gives the same bytes again."""

import os
import socket
import subprocess
import sys
from pathlib import Path

from helpers import pretokenize, run_cli, shard_digests

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _args(model_dir, data, out, *extra):
    return ["extract", "--model", str(model_dir), "--data", str(data), "--out", str(out), "--ctx", "32",
            "--batch-size", "4", "--tokens", "4096", "--shard-mb", "0.01", "--quiet",
            "--hooks", "blocks.*.hook_resid_post", *extra]


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


def test_two_hosts_equal_single_process_and_overwrite(tmp_path, tiny_neox_dir, text_file):
    from interp.cache import open_cache

    tokens = pretokenize(tiny_neox_dir, text_file, tmp_path / "tokens.npy", env=ENV)
    single = tmp_path / "single"
    run_cli(*_args(tiny_neox_dir, tokens, single), env=ENV)

    out = tmp_path / "shared"  # the folder every "host" sees
    _two_hosts(_args(tiny_neox_dir, tokens, out), "first")
    want = shard_digests(single)
    assert len(want) > 8 and shard_digests(out) == want
    assert sorted(p.name for p in out.glob("manifest*")) == ["manifest.json"] + [f"manifest.rank{r}.json"
                                                                               for r in range(4)]
    assert open_cache(out).n_rows == open_cache(single).n_rows == 4096

    _two_hosts(_args(tiny_neox_dir, tokens, out, "--overwrite"), "second")
    assert shard_digests(out) == want
    assert not list(out.glob(".*.tmp"))
