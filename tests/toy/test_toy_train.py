"""Training code: Pythia checkpoint schedule, fp16 checkpoints that transformers loads, seeded reproducibility."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from interp.errors import ConfigError
from interp.toy.train import TrainConfig, checkpoint_steps, train_suite

TINY = TrainConfig(steps=3, batch=2, ctx=32, n_train_docs=60, late_checkpoints=1, eval_blocks=4, warmup=2)


def test_toy_checkpoint_schedule_is_pythias():
    assert checkpoint_steps(3000, 3) == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 2000, 3000]
    assert checkpoint_steps(10) == [0, 1, 2, 4, 8, 10]
    assert checkpoint_steps(1000, 2) == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 756, 1000]
    with pytest.raises(ConfigError):
        checkpoint_steps(0)


def test_toy_unknown_suite_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        train_suite("toy-pythia-9l", tmp_path, config=TINY, log=None)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    info = train_suite("toy-pythia-2l", out, config=TINY, log=None)
    return out / "toy-pythia-2l", info


def test_toy_train_writes_loadable_fp16_checkpoints(tiny_run):
    from safetensors import safe_open
    from transformers import GPTNeoXForCausalLM

    folder, info = tiny_run
    assert info["steps"] == [0, 1, 2, 3] and info["final_step"] == 3
    assert json.loads((folder / "suite.json").read_text())["heldout_loss"].keys() == {"0", "1", "2", "3"}
    for s in info["steps"]:
        with safe_open(str(folder / f"step{s}" / "model.safetensors"), "pt") as f:
            assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys())
    m = GPTNeoXForCausalLM.from_pretrained(str(folder / "step3"), dtype=torch.float32)
    cfg = m.config
    assert cfg.use_parallel_residual and not cfg.tie_word_embeddings and cfg.num_hidden_layers == 2
    assert abs(cfg.rope_parameters["partial_rotary_factor"] - 0.25) < 1e-9 if hasattr(cfg, "rope_parameters") \
        else abs(cfg.rotary_pct - 0.25) < 1e-9


def test_toy_training_is_seeded(tiny_run, tmp_path):
    """Same seed -> bit-identical weights and held-out losses; the step-0 checkpoint is the seeded init."""
    from safetensors.torch import load_file

    folder, info = tiny_run
    again = train_suite("toy-pythia-2l", tmp_path, config=TINY, log=None)
    assert again["heldout_loss"] == info["heldout_loss"]
    a = load_file(str(folder / "step3" / "model.safetensors"))
    b = load_file(str(tmp_path / "toy-pythia-2l" / "step3" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = load_file(str(folder / "step0" / "model.safetensors"))
    assert not torch.equal(a["embed_out.weight"], c["embed_out.weight"])


def test_toy_missing_heldout_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        train_suite("toy-pythia-2l", tmp_path, corpus_dir=Path(tmp_path) / "nope", config=TINY, log=None)
