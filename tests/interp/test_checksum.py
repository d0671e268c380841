"""Shard file checksums: new files get xxh3_128 records, caches with sha256 records (all written before) keep opening
and verifying, a flipped byte is caught under both, and malformed records are refused. Digests are computed here
with hashlib / xxhash directly, never through interp.cache.checksum."""

import hashlib
import json
import shutil

import pytest
import torch
import xxhash

from apps.cli import main as cli
from helpers import extract_config
from interp.cache import Manifest, checksum, open_cache
from interp.cache.manifest import ShardRecord
from interp.errors import CacheCorruptError, CacheError
from interp.extract import extract

HOOKS = ["blocks.*.hook_resid_post", "blocks.0.attn.hook_z"]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _xxh(data: bytes) -> str:
    return xxhash.xxh3_128(data).hexdigest()


@pytest.fixture(scope="module")
def new_cache(tmp_path_factory, tiny_neox_dir, text_file):
    out = tmp_path_factory.mktemp("ck") / "c"
    extract(extract_config(out, tiny_neox_dir, text_file, tokens=1024, hooks=HOOKS), progress=False)
    return out


def _as_sha256(folder, keep=lambda shard: False) -> None:
    """Rewrite the manifest's file records as the sha256 records interp wrote until now (shards where `keep` is true
    keep their xxh3_128 records: a cache resumed by a newer interp)."""
    doc = json.loads((folder / "manifest.json").read_text())
    for shard in doc["shards"]:
        if not keep(shard):
            shard["files"] = {name: {"sha256": _sha256((folder / name).read_bytes()), "bytes": rec["bytes"]}
                              for name, rec in shard["files"].items()}
    (folder / "manifest.json").write_text(json.dumps(doc, indent=1))


def _read_all(reader) -> dict[str, torch.Tensor]:
    return {hook: reader.read(hook) for hook in reader.manifest.hooks}


def test_module_table_and_records():
    data = bytes(range(256)) * 1000
    assert checksum.DEFAULT == "xxh3_128"
    assert {name: n for name, (_, n) in checksum.ALGORITHMS.items()} == {"xxh3_128": 32, "sha256": 64}
    for name, ref in (("xxh3_128", _xxh(data)), ("sha256", _sha256(data))):
        h = checksum.hasher(name)
        h.update(data[:1000])
        h.update(data[1000:])
        assert h.hexdigest() == ref == checksum.digest_bytes(data, name)
        rec = checksum.record(ref, len(data), name)
        assert rec == {name: ref, "bytes": len(data)}
        assert checksum.algorithm_of(rec) == name == checksum.validate(rec)
        assert checksum.matches(data, rec) and checksum.matches(memoryview(data), rec)
        assert not checksum.matches(data[:-1] + b"\x00", rec) and not checksum.matches(data[:-1], rec)
    with pytest.raises(ValueError, match="xxh3_128.*sha256"):
        checksum.hasher("md5")
    with pytest.raises(ValueError, match="exactly one checksum"):
        checksum.algorithm_of({"bytes": 3})


def test_file_digest_streams_and_matches(tmp_path):
    data = bytes(range(251)) * 997  # not a multiple of the chunk
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    for name, ref in (("xxh3_128", _xxh(data)), ("sha256", _sha256(data))):
        assert checksum.digest_file(path, name, chunk=4096) == ref == checksum.digest_file(path, name)
        rec = {name: ref, "bytes": len(data)}
        assert checksum.matches(path, rec) and checksum.matches(str(path), rec)
        assert not checksum.matches(tmp_path / "missing", rec)
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert not checksum.matches(path, {"xxh3_128": _xxh(data), "bytes": len(data)})
    assert not checksum.matches(path, {"sha256": _sha256(data), "bytes": len(data)})


def test_new_files_are_recorded_with_xxh3_128(new_cache):
    doc = json.loads((new_cache / "manifest.json").read_text())
    records = [(name, rec) for s in doc["shards"] for name, rec in s["files"].items()]
    assert len(records) > 8
    for name, rec in records:
        data = (new_cache / name).read_bytes()
        assert rec == {"xxh3_128": _xxh(data), "bytes": len(data)}, name


@pytest.mark.parametrize("algorithm", ["xxh3_128", "sha256"])
def test_flipped_byte_caught_under_both_algorithms(tmp_path, new_cache, algorithm, capsys):
    copy = tmp_path / "c"
    shutil.copytree(new_cache, copy)
    if algorithm == "sha256":
        _as_sha256(copy)
    doc = json.loads((copy / "manifest.json").read_text())
    assert all(set(r) == {algorithm, "bytes"} for s in doc["shards"] for r in s["files"].values())
    expected = _read_all(open_cache(new_cache))
    reader = open_cache(copy)  # verify="lazy": every file's checksum the first time it is opened
    got = _read_all(reader)
    assert all(torch.equal(got[h], expected[h]) for h in expected)
    assert reader.verify_all() == [] and cli(["cache", "verify", str(copy)]) == 0
    assert "ok " in capsys.readouterr().out

    victim = copy / sorted(Manifest.load(copy).shards[1].files)[0]
    assert victim.name.startswith("blocks.0.attn.hook_z")
    data = bytearray(victim.read_bytes())
    data[-3] ^= 0x01
    victim.write_bytes(bytes(data))
    problems = open_cache(copy).verify_all()
    assert len(problems) == 1 and victim.name in problems[0]
    assert f"does not match its {algorithm} in the manifest" in problems[0]
    with pytest.raises(CacheCorruptError, match=f"{victim.name} does not match its {algorithm}"):
        open_cache(copy).read("blocks.0.attn.hook_z")
    assert open_cache(copy, verify="size").read("blocks.0.attn.hook_z").shape[0] == 1024  # size only: not hashed
    assert cli(["cache", "verify", str(copy)]) == 1
    assert victim.name in capsys.readouterr().out


def test_old_cache_resumed_by_new_interp_mixes_records_and_verifies(tmp_path, new_cache, tiny_neox_dir, text_file):
    """A cache written with sha256 records and resumed now holds both kinds; each file is checked with its own."""
    copy = tmp_path / "c"
    shutil.copytree(new_cache, copy)
    _as_sha256(copy)
    doc = json.loads((copy / "manifest.json").read_text())
    n = len(doc["shards"])
    dropped = [s for s in doc["shards"] if s["index"] >= n // 2]
    doc["shards"] = [s for s in doc["shards"] if s["index"] < n // 2]
    doc.update(status="in_progress", n_shards=len(doc["shards"]))
    (copy / "manifest.json").write_text(json.dumps(doc))
    for s in dropped:
        for name in s["files"]:
            (copy / name).unlink()
    extract(extract_config(copy, tiny_neox_dir, text_file, tokens=1024, hooks=HOOKS, resume=True), progress=False)
    doc = json.loads((copy / "manifest.json").read_text())
    kinds = {s["index"]: {checksum.algorithm_of(r) for r in s["files"].values()} for s in doc["shards"]}
    assert doc["status"] == "complete" and len(kinds) == n
    assert all(kinds[i] == ({"sha256"} if i < n // 2 else {"xxh3_128"}) for i in kinds)
    assert open_cache(copy).verify_all() == [] and cli(["cache", "verify", str(copy)]) == 0


@pytest.mark.parametrize("rec, why", [
    ({"md5": "0" * 32, "bytes": 1}, "exactly one checksum"),
    ({"bytes": 1}, "exactly one checksum"),
    ({"xxh3_128": "0" * 32, "sha256": "0" * 64, "bytes": 1}, "exactly one checksum"),
    ({"xxh3_128": "0" * 64, "bytes": 1}, "32 lowercase hex"),
    ({"sha256": "0" * 32, "bytes": 1}, "64 lowercase hex"),
    ({"xxh3_128": "A" * 32, "bytes": 1}, "32 lowercase hex"),
    ({"xxh3_128": 7, "bytes": 1}, "32 lowercase hex"),
    ({"xxh3_128": "0" * 32, "bytes": -1}, "non-negative integer 'bytes'"),
    ({"xxh3_128": "0" * 32}, "non-negative integer 'bytes'"),
    ("0" * 32, "non-negative integer 'bytes'"),
])
def test_malformed_record_refused_naming_the_accepted_algorithms(rec, why):
    shard = {"index": 0, "rows": [0, 1], "blocks": [0, 1], "files": {"a.00000.npy": rec}}
    with pytest.raises(ValueError, match=why) as e:
        ShardRecord.from_json(shard)
    assert "'a.00000.npy'" in str(e.value) and "'xxh3_128' (32" in str(e.value) and "'sha256' (64" in str(e.value)
    for good in ({"xxh3_128": "0f" * 16, "bytes": 0}, {"sha256": "0f" * 32, "bytes": 5, "format": "x"}):
        assert ShardRecord.from_json({**shard, "files": {"a.00000.npy": good}}).files["a.00000.npy"] == good


def test_manifest_with_unknown_algorithm_refused_on_open(tmp_path, new_cache):
    copy = tmp_path / "c"
    shutil.copytree(new_cache, copy)
    doc = json.loads((copy / "manifest.json").read_text())
    name, rec = next(iter(doc["shards"][0]["files"].items()))
    md5 = hashlib.md5((copy / name).read_bytes()).hexdigest()
    doc["shards"][0]["files"][name] = {"md5": md5, "bytes": rec["bytes"]}
    (copy / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(CacheError, match="'xxh3_128'.*'sha256'"):
        open_cache(copy)


def test_feature_major_file_checked_with_its_records_algorithm(tmp_path):
    from interp.cache.sparse import read_feature_major_shard, write_feature_major_shard
    from interp.kernels import threshold_from_dense, to_feature_major

    path = tmp_path / "f.safetensors"
    rec = write_feature_major_shard(path, to_feature_major(threshold_from_dense(torch.randn(6, 40).relu(), 0.5)))
    data = path.read_bytes()
    assert rec["xxh3_128"] == _xxh(data) and rec["bytes"] == len(data) and "sha256" not in rec
    old = {"sha256": _sha256(data), "bytes": len(data)}
    assert read_feature_major_shard(path, old).n_rows == 6
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    for r, name in ((rec, "xxh3_128"), (old, "sha256")):
        with pytest.raises(CacheCorruptError, match=f"does not match its {name}"):
            read_feature_major_shard(path, r)
