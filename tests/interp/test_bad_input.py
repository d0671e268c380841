"""Bad input is refused with one clear typed error, never silently cached, never executed."""

import json
import pickle
import shutil

import pytest
import torch

from helpers import extract_config
from interp.cache import open_cache
from interp.cache.manifest import Manifest
from interp.errors import CacheError, ConfigError, DataSourceError, ModelNotFoundError
from interp.extract import extract
from interp.models import load
from interp.sources import token_blocks

_cfg = extract_config  # 512 tokens, ctx 32, resid_post hooks


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory, tiny_neox_dir, text_file):
    out = tmp_path_factory.mktemp("bad") / "c"
    extract(_cfg(out, tiny_neox_dir, text_file), progress=False)
    return out


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["shards"][0]["files"].update({"../../etc/passwd": d["shards"][0]["files"].popitem()[1]}),
     "not a plain file name"),
    (lambda d: d["shards"][0]["files"].update({"/etc/passwd": {"bytes": 1, "sha256": "0" * 64}}),
     "not a plain file name"),
    (lambda d: d["shards"][0].update(rows=[10, -5]), "rows"),
    (lambda d: d["shards"][0].update(index="zero"), "index"),
    (lambda d: next(iter(d["hooks"].values())).update(shape=[-3]), "shape"),
    (lambda d: next(iter(d["hooks"].values())).update(dtype="object"), "dtype"),
    (lambda d: next(iter(d["hooks"].values())).update(file_stem="../x"), "file_stem"),
    (lambda d: d.update(shards="many"), "malformed"),
    (lambda d: d.update(schema_version=99), "schema version 99"),
    # found by tests/interp/test_properties.py: wrong types that used to escape as KeyError/TypeError/AttributeError
    (lambda d: d.update(identity=["x"]), "'identity' must be an object"),
    (lambda d: d["hooks"]["blocks.0.hook_resid_post"].pop("format"), "unknown storage format None"),
    (lambda d: d["layout"].update(blocks_per_shard="2"), "blocks_per_shard"),
    # manifests that disagree with the (intact) files used to be read silently
    (lambda d: d["hooks"]["blocks.0.hook_resid_post"].update(dtype="bfloat16"), "holds float32 .*says bfloat16"),
    (lambda d: d["hooks"]["blocks.0.hook_resid_post"].update(shape=[7, 9]), r"says float32 \[\d+, 7, 9\]"),
    (lambda d: d["shards"][0].update(rows=[0, 1000]), "after rows ending at 1000"),
])
def test_hostile_manifest_refused(tmp_path, small_cache, mutate, message):
    copy = tmp_path / "c"
    shutil.copytree(small_cache, copy)
    doc = json.loads((copy / "manifest.json").read_text())
    mutate(doc)
    (copy / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(CacheError, match=message):
        open_cache(copy).read("blocks.0.hook_resid_post")


def test_garbage_manifest_refused(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(CacheError, match="not valid JSON"):
        Manifest.load(tmp_path)
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(CacheError):
        Manifest.load(tmp_path)


@pytest.mark.parametrize("kind", ["dense", "topk", "threshold"])
def test_nan_activation_reported_with_location(tmp_path, tiny_neox_dir, text_file, kind):
    """Dense rows are checked on the host; a sparse hook's rows are selected on the device and never copied, so
    its per-row NaN/inf codes name the place instead."""
    from interp.cache.sparse_formats import sparse_spec

    model = load(tiny_neox_dir)
    hook = "blocks.1.hook_resid_post"
    formats = {} if kind == "dense" else {hook: sparse_spec(kind, k=4, threshold=0.5, d=model.cfg.d_model)}

    def poison(x, hook):
        if len(x) > 1:
            x[1, 7, 0] = float("nan")  # second sequence of each batch, position 7
        return x

    model.add_hook(hook, poison)
    with pytest.raises(CacheError, match=r"NaN in blocks.1.hook_resid_post at sequence 1, position 7"):
        extract(_cfg(tmp_path / "nan", tiny_neox_dir, text_file, formats=formats), model=model, progress=False)
    assert not (tmp_path / "nan" / "manifest.json").exists() or \
        json.loads((tmp_path / "nan" / "manifest.json").read_text())["status"] != "complete"


def test_nan_in_a_later_shard_keeps_the_earlier_ones(tmp_path, tiny_neox_dir, text_file):
    """An inf in a later shard is found when that shard lands (the next one is already launched): the shards before
    it are listed and intact, nothing after them is listed, and the error names the sequence in the whole stream."""
    model = load(tiny_neox_dir)
    calls = {"n": 0}

    def poison(x, hook):
        calls["n"] += 1
        if calls["n"] == 6:  # call 1 is the layout probe; call 6 is stream batch 4: blocks 8-9
            x[1, 3, 1] = float("inf")
        return x

    model.add_hook("blocks.0.hook_resid_post", poison)
    kw = {"batch_size": 2, "tokens": 32 * 16}
    extract(_cfg(tmp_path / "ref", tiny_neox_dir, text_file, **kw), progress=False)
    per_shard = Manifest.load(tmp_path / "ref").layout["blocks_per_shard"]
    bad_shard = 9 // per_shard
    assert 0 < bad_shard < 16 // per_shard - 1  # shards before it to keep, one after it in flight
    with pytest.raises(CacheError, match=r"inf in blocks.0.hook_resid_post at sequence 9, position 3"):
        extract(_cfg(tmp_path / "inf", tiny_neox_dir, text_file, **kw), model=model, progress=False)
    assert [s.index for s in Manifest.load(tmp_path / "inf").shards] == list(range(bad_shard))
    assert open_cache(tmp_path / "inf", allow_incomplete=True).verify_all() == []


def test_context_longer_than_model(tmp_path, tiny_neox_dir, text_file):
    with pytest.raises(ConfigError, match="longer than the model's context of 32"):
        extract(_cfg(tmp_path / "long", tiny_neox_dir, text_file, ctx=64, tokens=640), progress=False)


def test_non_utf8_and_empty_text(tmp_path, tiny_model):
    (tmp_path / "latin.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(DataSourceError, match="not UTF-8 text"):
        token_blocks(str(tmp_path / "latin.txt"), tiny_model.tokenizer, ctx=4)
    (tmp_path / "latin.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataSourceError, match="latin.jsonl is not UTF-8"):
        token_blocks(str(tmp_path / "latin.jsonl"), tiny_model.tokenizer, ctx=4)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataSourceError, match="fewer than 8 tokens"):
        token_blocks(str(tmp_path / "empty.txt"), tiny_model.tokenizer, ctx=8)


def test_wrong_dtype_and_positions(tmp_path, tiny_neox_dir, text_file):
    with pytest.raises(ConfigError, match="unknown --dtype int8") as err:
        extract(_cfg(tmp_path / "d", tiny_neox_dir, text_file, dtype="int8"), progress=False)
    assert "int" not in err.value.hint  # the hint names only dtypes that can hold activations
    with pytest.raises(ConfigError, match="unknown position selector"):
        extract(_cfg(tmp_path / "p", tiny_neox_dir, text_file, positions="every-other"), progress=False)
    for integer in ("int32", "uint8"):  # known storage dtypes, but they would truncate or wrap the activations
        with pytest.raises(ConfigError, match=f"--dtype {integer} cannot hold activations"):
            extract(_cfg(tmp_path / integer, tiny_neox_dir, text_file, dtype=integer), progress=False)
        assert not (tmp_path / integer).exists()


@pytest.mark.parametrize("kind", ["topk", "threshold"])
def test_sparse_float16_overflow_refused(tmp_path, tiny_neox_dir, text_file, kind):
    """Sparse values past float16's range are refused like dense NaN/inf, not stored as inf; earlier shards stay."""
    from interp.cache.sparse_formats import sparse_spec

    model = load(tiny_neox_dir)
    calls = {"n": 0}

    def blow_up(x, hook):
        calls["n"] += 1
        return x * 1e6 if calls["n"] >= 6 else x  # the probe and the first stream batches are fine

    hook = "blocks.0.hook_resid_post"
    model.add_hook(hook, blow_up)
    spec = sparse_spec(kind, k=4, threshold=0.5, d=model.cfg.d_model, value_dtype="float16")
    with pytest.raises(CacheError, match=f"inf in the {kind} values stored as float16"):
        extract(_cfg(tmp_path / kind, tiny_neox_dir, text_file, hooks=[hook], formats={hook: spec}, batch_size=2),
                model=model, progress=False)
    listed = Manifest.load(tmp_path / kind).shards
    assert listed and open_cache(tmp_path / kind, allow_incomplete=True).verify_all() == []
    assert bool(torch.isfinite(open_cache(tmp_path / kind, allow_incomplete=True).read(hook)).all())


class _Exploit:
    """Unpickling this would run os.system and create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_planted_pickle_checkpoint_is_never_unpickled(tmp_path, tiny_neox_dir):
    evil = tmp_path / "evil-model"
    evil.mkdir()
    shutil.copy(tiny_neox_dir / "config.json", evil / "config.json")
    marker = tmp_path / "pwned"
    (evil / "pytorch_model.bin").write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(ModelNotFoundError, match="no safetensors weights.*pytorch_model.bin"):
        load(evil)
    assert not marker.exists()
    # and torch.load on the read path is always weights_only: the same bytes are refused there too
    with pytest.raises(Exception):  # noqa: B017 - torch raises UnpicklingError
        torch.load(evil / "pytorch_model.bin", weights_only=True)
    assert not marker.exists()


def test_network_is_blocked_and_not_needed():
    import socket

    with pytest.raises(OSError, match="network access blocked"):
        socket.create_connection(("203.0.113.7", 443), timeout=1)


@pytest.fixture(scope="module")
def wide_sae(tmp_path_factory):
    """A TopK SAE with d_in=48, for hooks of the tiny model that are 32 wide."""
    from sae_lens import TopKSAE, TopKSAEConfig

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sae") / "wide"
    TopKSAE(TopKSAEConfig(d_in=48, d_sae=96, k=4)).save_model(str(path))
    return path


def _no_complete_cache(out):
    """Nothing that looks like a cache: no manifest (so no listed shard) and no shard files."""
    return not out.exists() or (not (out / "manifest.json").exists() and not list(out.glob("*.npy")))


def test_sae_width_mismatch_refused_by_library(tmp_path, tiny_model, tiny_neox_dir, text_file, wide_sae):
    from interp.encode import sparse_hook_formats, sparse_spec

    hook = "blocks.1.hook_resid_post"
    with pytest.raises(ConfigError, match=r"d_in=48, but hook blocks.1.hook_resid_post has width 32"):
        sparse_hook_formats(tiny_model, [hook], "topk", sae=str(wide_sae))
    # extract itself checks before any shard is written, also when the formats were built without the model
    formats = {hook: sparse_spec("topk", sae=str(wide_sae))}
    out = tmp_path / "c"
    with pytest.raises(ConfigError, match=r"d_in=48, but hook blocks.1.hook_resid_post has width 32"):
        extract(_cfg(out, tiny_neox_dir, text_file, hooks=[hook], formats=formats), model=tiny_model, progress=False)
    assert _no_complete_cache(out)


def test_sae_width_mismatch_refused_by_cli(tmp_path, tiny_neox_dir, text_file, wide_sae, capsys):
    from apps.cli import main

    out = tmp_path / "c"
    rc = main(["extract", "--model", str(tiny_neox_dir), "--data", str(text_file), "--out", str(out), "--ctx", "32",
               "--tokens", "256", "--batch-size", "4", "--quiet", "--hooks", "blocks.0.hook_resid_post",
               "--sae", str(wide_sae), "--sparse", "topk"])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2
    assert err[0] == f"interp: error: SAE {wide_sae} has d_in=48, but hook blocks.0.hook_resid_post has width 32"
    assert len(err) == 2 and err[1].startswith("  hint:") and "Traceback" not in "".join(err)
    assert _no_complete_cache(out)


@pytest.mark.parametrize("positions", ["drop:40", "range:32:40", "drop:32"])
def test_positions_that_select_no_row_are_refused_before_any_file(tmp_path, tiny_neox_dir, text_file, capsys,
                                                                  positions):
    """With --ctx 32, positions from 32 on select nothing: a one-line error and no --out folder (was: an empty
    cache of 0 rows, status complete). The count of selected positions is computed here by hand: 32 - K."""
    from apps.cli import main

    out = tmp_path / "c"
    rc = main(["extract", "--model", str(tiny_neox_dir), "--data", str(text_file), "--out", str(out), "--ctx", "32",
               "--tokens", "256", "--batch-size", "4", "--quiet", "--positions", positions])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2 and len(err) == 2 and "selects no position" in err[0] and "--ctx 32" in err[0]
    assert not out.exists()
    # one position left is still a cache: drop:31 keeps position 31 of each of the 8 blocks
    extract(extract_config(tmp_path / "one", tiny_neox_dir, text_file, tokens=256, positions="drop:31"),
            progress=False)
    assert len(open_cache(tmp_path / "one")) == 256 // 32 * (32 - 31)


def test_a_run_that_fails_on_bad_data_leaves_no_empty_out_folder(tmp_path, tiny_model, tiny_neox_dir):
    """Bad data stops the run before its first shard: the folders extract created for --out (parents included) are
    removed again, but a folder that was there before, or anything inside one, is kept."""
    (tmp_path / "latin.jsonl").write_bytes(b'{"text": "caf\xe9"}\n')
    bad = tmp_path / "latin.jsonl"
    nested = tmp_path / "new" / "deeper" / "cache"
    with pytest.raises(DataSourceError, match="not UTF-8"):
        extract(_cfg(nested, tiny_neox_dir, bad), model=tiny_model, progress=False)
    assert not (tmp_path / "new").exists()
    mine = tmp_path / "mine"  # the user's empty folder, and one of theirs holding a file
    mine.mkdir()
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("keep me")
    for out in (mine, mine / "sub", tmp_path / "theirs" / "sub"):
        with pytest.raises(DataSourceError):
            extract(_cfg(out, tiny_neox_dir, bad), model=tiny_model, progress=False)
    assert mine.is_dir() and not (mine / "sub").exists() and list(mine.iterdir()) == []
    assert (tmp_path / "theirs" / "notes.txt").read_text() == "keep me" and not (tmp_path / "theirs" / "sub").exists()


def test_already_holds_a_cache_says_what_it_found(tmp_path, tiny_model, tiny_neox_dir, text_file):
    """The refusal to write over a cache names what is there, read back from its manifest independently here."""
    out = tmp_path / "c"
    extract(_cfg(out, tiny_neox_dir, text_file, tokens=256), model=tiny_model, progress=False)
    doc = json.loads((out / "manifest.json").read_text())
    with pytest.raises(CacheError) as err:
        extract(_cfg(out, tiny_neox_dir, text_file, tokens=256), model=tiny_model, progress=False)
    msg = err.value.message
    assert f"model {doc['identity']['model']}" in msg
    assert f"{len(doc['shards'])} shards of {doc['n_rows']:,} rows" in msg
    assert "status complete" in msg and all(h in msg for h in doc["hooks"])
    assert "--resume" in err.value.hint and "--overwrite" in err.value.hint
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(CacheError, match="already holds a cache .its manifest cannot be read"):
        extract(_cfg(out, tiny_neox_dir, text_file, tokens=256), model=tiny_model, progress=False)
