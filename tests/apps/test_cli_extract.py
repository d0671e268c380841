"""`interp extract` end to end in subprocesses: SIGKILL + --resume is bit-identical, memory is bounded, errors are
one line with exit code 2."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xxhash

ROOT = Path(__file__).resolve().parents[2]


def _run(args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "apps.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300, **kw)


def _popen(args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "apps.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.npy"))}


@pytest.fixture(scope="module")
def big_text(tmp_path_factory, text_file):
    """The test corpus repeated ten times: about 77k tokens."""
    path = tmp_path_factory.mktemp("big") / "big.jsonl"
    path.write_text(text_file.read_text() * 10)
    return path


def _args(model_dir, data, out, *extra):
    return ["extract", "--model", str(model_dir), "--data", str(data), "--out", str(out), "--ctx", "32",
            "--batch-size", "4", "--quiet", *extra]


def test_sigkill_then_resume_is_bit_identical(tmp_path, tiny_neox_dir, big_text):
    common = ["--tokens", "8192", "--shard-mb", "0.01", "--hooks", "blocks.*.hook_resid_post", "blocks.1.mlp.hook_post"]
    ref = tmp_path / "ref"
    done = _run(_args(tiny_neox_dir, big_text, ref, *common))
    assert done.returncode == 0, done.stderr
    out = tmp_path / "killed"
    proc = _popen(_args(tiny_neox_dir, big_text, out, *common))
    deadline = time.time() + 600
    listed = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            listed = json.loads((out / "manifest.json").read_text())["n_shards"]
        except (OSError, ValueError, KeyError):
            listed = 0
        if listed >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "extraction finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = json.loads((out / "manifest.json").read_text())
    assert partial["status"] == "in_progress" and 3 <= partial["n_shards"] < 64
    for shard in partial["shards"]:  # every listed shard is complete on disk
        for name, rec in shard["files"].items():
            assert xxhash.xxh3_128((out / name).read_bytes()).hexdigest() == rec["xxh3_128"]
    resumed = _run(_args(tiny_neox_dir, big_text, out, *common, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert _digests(out) == _digests(ref)
    m_ref, m_out = (json.loads((d / "manifest.json").read_text()) for d in (ref, out))
    assert m_out["status"] == "complete" and m_out["shards"] == m_ref["shards"]
    assert not list(out.glob(".*.tmp")) and not (out / ".lock").exists()


def _peak_rss_mb(model_dir, data, out, tokens) -> float:
    code = (
        "import resource, sys; from interp.extract import ExtractConfig, extract; "
        f"extract(ExtractConfig(out={str(out)!r}, model={str(model_dir)!r}, data={str(data)!r}, tokens={tokens}, "
        "ctx=32, batch_size=16, shard_mb=4, hooks=['hook_embed', 'blocks.0.hook_resid_pre']), progress=False); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    return float(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def wide_model_dir(tmp_path_factory):
    """A 1-layer GPT-NeoX with d_model 1024: 8 KiB per token at two early hooks, cheap to run (stops early)."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from helpers import VOCAB, tiny_tokenizer

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("wide") / "wide"
    cfg = GPTNeoXConfig(vocab_size=VOCAB, hidden_size=1024, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=32, rotary_pct=0.25)
    GPTNeoXForCausalLM(cfg).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def test_peak_memory_does_not_grow_with_tokens(tmp_path, wide_model_dir, big_text):
    small = _peak_rss_mb(wide_model_dir, big_text, tmp_path / "a", 8192)
    large = _peak_rss_mb(wide_model_dir, big_text, tmp_path / "b", 49152)
    written = sum(p.stat().st_size for p in (tmp_path / "b").glob("*.npy")) / 2**20
    assert written > 380  # 48k tokens x 8 KiB: far more than the shard buffer
    assert large - small < 64, f"peak RSS grew from {small:.0f} to {large:.0f} MiB"


def test_errors_are_one_line_exit_2(tmp_path, tiny_neox_dir, big_text):
    res = _run(_args(tiny_neox_dir, big_text, tmp_path / "o", "--hooks", "blocks.0.hook_resid_pots"))
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines[0].startswith("interp: error: hook pattern") and "closest: blocks.0.hook_resid_post" in lines[0]
    assert "Traceback" not in res.stderr
    res = _run(["extract", "--model", "no-such-model", "--out", str(tmp_path / "p")])
    assert res.returncode == 2 and "unknown model 'no-such-model'" in res.stderr and "Traceback" not in res.stderr


def test_cache_info_and_verify(tmp_path, tiny_neox_dir, big_text):
    out = tmp_path / "c"
    assert _run(_args(tiny_neox_dir, big_text, out, "--tokens", "1024")).returncode == 0
    info = _run(["cache", "info", str(out)])
    assert info.returncode == 0 and "blocks.0.hook_resid_post" in info.stdout and "1,024" in info.stdout
    assert _run(["cache", "verify", str(out)]).returncode == 0
    victim = sorted(out.glob("blocks.1.*.npy"))[0]
    victim.write_bytes(victim.read_bytes()[:-8])
    bad = _run(["cache", "verify", str(out)])
    assert bad.returncode == 1 and victim.name in bad.stdout
    repaired = _run(["cache", "verify", "--repair", str(out)])  # a successful repair is not a failure (was: exit 1)
    assert repaired.returncode == 0 and victim.name in repaired.stdout and "unlisted 1 bad shard" in repaired.stdout
    assert _run(["cache", "verify", str(out)]).returncode == 0


def test_verify_repair_that_does_not_take_exits_1(tmp_path, tiny_neox_dir, big_text, monkeypatch, capsys):
    """When the cache still has problems after --repair (here: the repaired manifest never reaches the disk),
    verify says so and exits 1."""
    from apps.cache_cmds import cache_verify
    from interp.cache.manifest import Manifest

    out = tmp_path / "c"
    assert _run(_args(tiny_neox_dir, big_text, out, "--tokens", "1024")).returncode == 0
    victim = sorted(out.glob("blocks.1.*.npy"))[0]
    victim.write_bytes(victim.read_bytes()[:-8])
    monkeypatch.setattr(Manifest, "save", lambda self, *a, **k: None)
    assert cache_verify(str(out), repair=True) == 1
    assert f"{victim.name}" in capsys.readouterr().out.split("unlisted")[1]  # named again, after the repair


def test_output_piped_into_head_is_not_an_error(tmp_path, tiny_neox_dir, big_text):
    """`interp cache info cache/ | head -1`: a reader that leaves early is not a failure (was: Broken pipe, exit 2)."""
    out = tmp_path / "c"
    assert _run(_args(tiny_neox_dir, big_text, out, "--tokens", "1024")).returncode == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(f"'{sys.executable}' -m apps.cli cache info '{out}' | true; "
                         "echo ${PIPESTATUS[0]}", shell=True, executable="/bin/bash", capture_output=True,
                         text=True, env=env, timeout=300)
    assert res.stdout.strip() == "0" and "error" not in res.stderr and "Exception" not in res.stderr, res.stderr


def test_tokenize_once_then_extract_equals_text_extract(tmp_path, tiny_neox_dir, big_text):
    """`interp tokenize` writes the blocks that extract would cut from the text: the caches are bit-identical."""
    common = ["--model", str(tiny_neox_dir), "--ctx", "32", "--tokens", "2048"]
    tok = _run(["tokenize", *common, "--data", str(big_text), "--out", str(tmp_path / "t.npy")])
    assert tok.returncode == 0, tok.stderr
    ex = ["extract", *common, "--hooks", "blocks.0.hook_resid_post", "--quiet", "--timings"]
    for data, out in ((tmp_path / "t.npy", "a"), (big_text, "b")):
        res = _run([*ex, "--data", str(data), "--out", str(tmp_path / out)])
        assert res.returncode == 0, res.stderr
        assert "rank 0 seconds by phase: setup" in res.stdout and "capture" in res.stdout
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    bad = _run(["tokenize", *common, "--data", str(big_text), "--out", str(tmp_path / "t.txt")])
    assert bad.returncode == 2 and "must end in .npy" in bad.stderr
