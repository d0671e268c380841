"""Weights dtype at load time and accelerate device maps: a memory cap that offloads part of a natively run model
(to disk on this CPU-only machine, to the CPU on a GPU one) gives the same cache as the model in one place; bf16
weights give the activations of the Hugging Face model loaded in bf16 by transformers itself."""

import numpy as np
import pytest
import torch
from tiny_hf import save_tiny_native

from helpers import extract_config
from interp import models
from interp.cache import open_cache
from interp.errors import ConfigError
from interp.extract import extract

HOOKS = ["blocks.*.hook_resid_post", "blocks.1.mlp.hook_post"]


@pytest.fixture(scope="module")
def qwen2_dir(tmp_path_factory):
    return save_tiny_native(tmp_path_factory.mktemp("placement") / "qwen2", "qwen2")


def test_memory_cap_offloads_part_and_the_cache_is_the_same(tmp_path, qwen2_dir, text_file):
    cap = {"cpu": "100KB"}  # the embedding fits, the blocks do not
    placed = models.load(qwen2_dir, device_map="auto", max_memory=cap)
    where = set(placed.hf.hf_device_map.values())
    assert "disk" in where and len(where) > 1, placed.hf.hf_device_map  # split, not all in one place
    extract(extract_config(tmp_path / "one", qwen2_dir, text_file, hooks=HOOKS), progress=False)
    extract(extract_config(tmp_path / "split", qwen2_dir, text_file, hooks=HOOKS, device_map="auto", max_memory=cap),
            progress=False)
    a, b = open_cache(tmp_path / "one"), open_cache(tmp_path / "split")
    for hook in a.manifest.hooks:
        np.testing.assert_allclose(b.read(hook), a.read(hook), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(a.tokens), np.asarray(b.tokens))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_memory_cap_puts_part_on_the_cpu(tmp_path, qwen2_dir, text_file):
    cap = {0: "100KB", "cpu": "1GiB"}
    placed = models.load(qwen2_dir, device_map="auto", max_memory=cap)
    assert {0, "cpu"} <= set(placed.hf.hf_device_map.values()), placed.hf.hf_device_map
    extract(extract_config(tmp_path / "one", qwen2_dir, text_file, hooks=HOOKS), progress=False)
    extract(extract_config(tmp_path / "split", qwen2_dir, text_file, hooks=HOOKS, device_map="auto", max_memory=cap),
            progress=False)
    a, b = open_cache(tmp_path / "one"), open_cache(tmp_path / "split")
    for hook in a.manifest.hooks:  # GPU and CPU kernels differ in summation order
        np.testing.assert_allclose(b.read(hook), a.read(hook), rtol=1e-4, atol=1e-5)


def test_bf16_weights_match_transformers_in_bf16(tmp_path, qwen2_dir, text_file):
    from transformers import AutoModelForCausalLM

    extract(extract_config(tmp_path / "bf", qwen2_dir, text_file, hooks=["blocks.*.hook_resid_post"],
                           model_dtype="bfloat16", dtype="bfloat16"), progress=False)
    cache = open_cache(tmp_path / "bf")
    assert cache.manifest.identity["model_dtype"] == "bfloat16"
    hf = AutoModelForCausalLM.from_pretrained(qwen2_dir, dtype=torch.bfloat16).eval()
    ids = torch.as_tensor(np.asarray(cache.tokens)[:, 0]).reshape(-1, 32)[:4]
    with torch.no_grad():
        hs = hf(input_ids=ids, output_hidden_states=True).hidden_states
    got = torch.as_tensor(cache.read("blocks.0.hook_resid_post")[: 4 * 32])  # bf16 rows come back as bf16
    want = hs[1].reshape(-1, hs[1].shape[-1])
    assert want.dtype == torch.bfloat16
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_device_map_is_refused_where_it_cannot_apply(tiny_neox_dir, qwen2_dir):
    from interp.errors import ModelNotFoundError

    for converted in (tiny_neox_dir, models.DEFAULT_MODEL, "own_model_factory:qwen2_pair"):
        with pytest.raises(ConfigError, match="natively run"):
            models.load(converted, device_map="auto")
    with pytest.raises(ModelNotFoundError, match="no training steps"):
        models.load(qwen2_dir, step=3, device_map="auto")
    with pytest.raises(ConfigError, match="model-dtype"):
        extract(extract_config("/nonexistent/out", tiny_neox_dir, "embedded", model_dtype="int3"), progress=False)
