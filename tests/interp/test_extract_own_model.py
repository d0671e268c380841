"""Your own model in extraction: native HF folders, module:factory models and Python objects give caches whose rows
equal a direct capture; token blocks follow the tokenizer's special-token convention (checked against the raw
token stream); refusals that need only flags and the folder happen before any model loads."""

import numpy as np
import pytest
import torch
from own_model_factory import TinyLM, qwen2_pair
from tiny_hf import bos_tokenizer, save_tiny_native

from apps.cli import main
from helpers import extract_config
from interp import models
from interp.cache import open_cache
from interp.capture import capture
from interp.errors import CacheError, ConfigError
from interp.extract import extract
from interp.sources import block_specials, iter_texts, token_blocks, tokenize_stream

HOOKS = ["blocks.*.hook_resid_post", "blocks.0.mlp.hook_post"]


def _cache_equals_capture(out, model, tokenizer, data, hooks, n_tokens=512, ctx=32):
    reader = open_cache(out)
    blocks = token_blocks(data, tokenizer, ctx=ctx, n_tokens=n_tokens)
    want = capture(model, blocks, hooks=hooks, positions="drop:0")
    assert set(reader.manifest.hooks) == set(want)
    for name, rows in want.items():
        np.testing.assert_array_equal(reader.read(name), rows.numpy())  # same forward passes: bit for bit
    np.testing.assert_array_equal(np.asarray(reader.tokens)[:, 0], blocks.reshape(-1).numpy())
    return blocks, reader


def _stream(data, tokenizer, n):
    ids = []
    for doc in tokenize_stream(iter_texts(str(data)), tokenizer):
        ids.extend(doc)
        if len(ids) >= n:
            return ids[:n]
    return ids


@pytest.mark.parametrize("kind", ["bert", "qwen2-bos", "gemma3_text", "mistral", "qwen3", "gemma2", "phi3", "olmo2"])
def test_native_folder_extracts_what_capture_returns(tmp_path, text_file, kind):
    arch = kind.split("-")[0]
    folder = save_tiny_native(tmp_path / arch, arch, tokenizer=bos_tokenizer() if kind.endswith("bos") else None)
    summary = extract(extract_config(tmp_path / "c", folder, text_file, hooks=HOOKS), progress=False)
    assert summary.n_tokens == 512
    model = models.load(folder)
    blocks, reader = _cache_equals_capture(tmp_path / "c", model, model.tokenizer, text_file,
                                           ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post",
                                            "blocks.0.mlp.hook_post"])
    prefix, suffix = block_specials(model.tokenizer)
    expected = {"qwen2": ([0], [])}.get(arch, ([], []))
    cls_sep = model.tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]"]) if arch == "bert" else None
    assert (prefix, suffix) == (expected if arch != "bert" else ([cls_sep[0]], [cls_sep[1]]))
    body = 32 - len(prefix) - len(suffix)
    # independent of the block cutter: the blocks are the raw token stream cut into bodies, wrapped
    stream = _stream(text_file, model.tokenizer, body * len(blocks))
    for i, block in enumerate(blocks.tolist()):
        assert block == prefix + stream[i * body:(i + 1) * body] + suffix
    recorded = reader.manifest.identity.get("special_tokens")
    assert recorded == ({"prefix": prefix, "suffix": suffix} if prefix or suffix else None)


def test_embedded_blocks_are_unchanged_and_converted_models_keep_their_tokenizers_convention(tmp_path):
    """transformer-lens swaps in a BOS-adding copy of the tokenizer: blocks still follow the folder's own tokenizer
    (nothing for the embedded default, BOS for a Llama-style tokenizer)."""
    from tiny_hf import tiny_hf_model

    raw = models.load_tokenizer(models.DEFAULT_MODEL)
    converted = models.load(models.DEFAULT_MODEL).tokenizer
    assert converted("a")["input_ids"] != raw("a")["input_ids"]  # the copy adds BOS ...
    for tok in (raw, converted):
        assert block_specials(tok) == ([], [])  # ... the blocks do not
        assert block_specials(tok, prepend_bos=True) == ([raw.bos_token_id], [])
    ids = _stream("embedded", raw, 4 * 64)
    for tok in (raw, converted):
        assert token_blocks("embedded", tok, ctx=64, n_tokens=256).reshape(-1).tolist() == ids
    tiny_hf_model("llama").save_pretrained(tmp_path / "llama", safe_serialization=True)
    bos_tokenizer().save_pretrained(tmp_path / "llama")
    llama = models.load(tmp_path / "llama")
    assert type(llama).__name__ == "HookedTransformer"
    assert block_specials(llama.tokenizer) == ([llama.tokenizer.bos_token_id], [])


def test_cli_factory_model(tmp_path, text_file):
    """`interp extract --model module:factory` with a factory returning (HF Qwen2, tokenizer)."""
    out = tmp_path / "c"
    rc = main(["extract", "--model", "own_model_factory:qwen2_pair", "--data", str(text_file), "--out", str(out),
               "--ctx", "32", "--tokens", "512", "--batch-size", "4", "--quiet", "--hooks", *HOOKS])
    assert rc == 0
    model = models.load("own_model_factory:qwen2_pair")
    hf, tok = qwen2_pair()
    assert torch.equal(model.hf.model.embed_tokens.weight, hf.model.embed_tokens.weight)
    _cache_equals_capture(out, model, tok, text_file, ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post",
                                                       "blocks.0.mlp.hook_post"])
    assert open_cache(out).manifest.identity["model_source"] == "own_model_factory:qwen2_pair"


def test_factory_plain_module_and_python_objects(tmp_path, text_file):
    model = models.load("own_model_factory:plain_with_attribute")
    assert models.load_tokenizer("own_model_factory:plain_with_attribute") is not None
    extract(extract_config(tmp_path / "a", "own_model_factory:plain_with_attribute", text_file, hooks=["mix"]),
            progress=False)
    _cache_equals_capture(tmp_path / "a", model, model.tokenizer, text_file, ["mix"])
    bare = TinyLM()  # no tokenizer attribute: pass it to extract
    with pytest.raises(ConfigError, match="has no tokenizer") as err:
        extract(extract_config(tmp_path / "b", "unused", text_file, hooks=["mix"]), model=bare, progress=False)
    assert "tokenizer=" in err.value.hint
    extract(extract_config(tmp_path / "b", "unused", text_file, hooks=["mix"]), model=bare,
            tokenizer=model.tokenizer, progress=False)
    _cache_equals_capture(tmp_path / "b", bare, model.tokenizer, text_file, ["mix"])
    assert not hasattr(bare, "tokenizer")
    with pytest.raises(ConfigError, match="has no tokenizer"):
        extract(extract_config(tmp_path / "d", "own_model_factory:plain_without_tokenizer", text_file,
                               hooks=["mix"]), progress=False)


def test_bad_factories_are_typed_errors():
    from interp.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="cannot import"):
        models.load("no_such_module_xyz:make")
    with pytest.raises(ModelNotFoundError, match="has no function"):
        models.load("own_model_factory:nope")


@pytest.fixture()
def no_loading(monkeypatch):
    """interp.extract.load replaced by a counter that fails: a refusal that reaches it loaded a model."""
    calls = []

    def load(*a, **k):
        calls.append(a)
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr("interp.extract.load", load)
    return calls


def test_refusals_come_before_the_model_loads(tmp_path, text_file, no_loading):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "manifest.json").write_text("{}")  # an existing cache (contents are not read before the check)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    file_out = tmp_path / "file"
    file_out.write_text("x")
    cases = [(dict(out=str(cache)), CacheError, "already holds a cache"),
             (dict(out=str(foreign)), CacheError, "not an interp cache"),
             (dict(out=str(foreign), overwrite=True), CacheError, "not an interp cache"),
             (dict(out=str(file_out)), CacheError, "is a file"),
             (dict(out=str(tmp_path / "new"), positions="first"), ConfigError, "position selector"),
             (dict(out=str(tmp_path / "new"), dtype="int8"), ConfigError, "--dtype int8")]
    for overrides, error, message in cases:
        cfg = extract_config(tmp_path / "x", "no_such_module_xyz:make", text_file)
        for k, v in overrides.items():
            setattr(cfg, k, v)
        with pytest.raises(error, match=message):
            extract(cfg, progress=False)
    assert no_loading == []
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("sparse", [[], ["--sparse", "topk", "--k", "4"]])
def test_cli_refuses_an_existing_cache_before_loading(tmp_path, text_file, capsys, sparse):
    """Dense and sparse `interp extract`: the model named cannot even be imported, the folder refusal wins."""
    (tmp_path / "manifest.json").write_text("{}")
    rc = main(["extract", "--model", "no_such_module_xyz:make", "--data", str(text_file), "--out", str(tmp_path),
               "--quiet", *sparse])
    assert rc == 2
    assert "already holds a cache" in capsys.readouterr().err
