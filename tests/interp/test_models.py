"""Model handles: local HF folders convert to HookedTransformers whose logits match transformers'."""

import pytest
import torch

from interp import models
from interp.errors import HubUnavailableError, ModelNotFoundError


@pytest.mark.parametrize("fixture", ["tiny_neox_dir", "tiny_gpt2_dir"])
def test_local_folder_logits_match_hf(fixture, request):
    from transformers import AutoModelForCausalLM

    path = request.getfixturevalue(fixture)
    ht = models.load(path)
    hf = AutoModelForCausalLM.from_pretrained(path).eval()
    toks = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (ht(toks) - hf(toks).logits).abs().max().item()
    assert diff < 1e-4


def test_processed_weights_keep_log_probs(tiny_neox_dir):
    toks = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(0))
    raw, folded = models.load(tiny_neox_dir), models.load(tiny_neox_dir, processing=True)
    with torch.no_grad():
        a, b = raw(toks).log_softmax(-1), folded(toks).log_softmax(-1)
    assert (a - b).abs().max().item() < 1e-4


def test_module_passes_through():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
    assert models.load(net) is net


def test_unknown_model_names_embedded_and_folder_form():
    with pytest.raises(ModelNotFoundError, match="unknown model") as err:
        models.load("no-such-model-xyz")
    assert "local Hugging Face folder" in err.value.hint


def test_hub_name_offline_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError, match="not reachable"):
        models.load("pythia-70m", step=1000)
    assert models.checkpoints("pythia-70m")[:11] == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512]


def test_local_folder_rejects_step(tiny_neox_dir):
    with pytest.raises(ModelNotFoundError, match="no training steps"):
        models.load(tiny_neox_dir, step=3)


def _hf_variant(kind: str):
    """Tiny random HF models for the config paths transformer-lens' converter handles badly on its own."""
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        GPTNeoConfig,
        GPTNeoForCausalLM,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
    )

    torch.manual_seed(0)
    if kind == "neox_rope_theta_500":  # the converter dropped rope theta: logits silently wrong
        cfg = GPTNeoXConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=64, rotary_pct=1.0, rope_theta=500.0,
                            tie_word_embeddings=False)
        return GPTNeoXForCausalLM(cfg)
    if kind == "gpt2_n_inner":  # no n_ctx written by newer transformers; an MLP width other than 4·d
        cfg = GPT2Config(vocab_size=300, n_embd=32, n_layer=2, n_head=4, n_positions=64, n_inner=48)
        return GPT2LMHeadModel(cfg)
    if kind == "llama_gqa_head_dim":  # grouped-query attention and head_dim != hidden / heads
        cfg = LlamaConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, head_dim=16, intermediate_size=64, max_position_embeddings=64)
        return LlamaForCausalLM(cfg)
    cfg = GPTNeoConfig(vocab_size=300, hidden_size=32, num_layers=2, num_heads=4, max_position_embeddings=64,
                       attention_types=[[["global", "local"], 1]], window_size=5)  # sequences exceed the window
    return GPTNeoForCausalLM(cfg)


@pytest.mark.parametrize("kind", ["neox_rope_theta_500", "gpt2_n_inner", "llama_gqa_head_dim", "gpt_neo_local"])
def test_more_architectures_match_hf_even_under_a_misleading_path(tmp_path, kind):
    """Logits equal the HF model's for each config path; the folder sits under 'llama_runs/gemma', names that
    transformer-lens' converter would otherwise take for the architecture."""
    from transformers import AutoModelForCausalLM

    path = tmp_path / "llama_runs" / "gemma" / kind
    _hf_variant(kind).save_pretrained(path, safe_serialization=True)
    ht = models.load(path)
    hf = AutoModelForCausalLM.from_pretrained(path).eval()
    toks = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (ht(toks) - hf(toks).logits).abs().max().item() < 1e-4


def test_unconvertible_config_is_a_typed_error(tmp_path):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    cfg = GPTNeoXConfig(vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=64, attention_bias=False)
    GPTNeoXForCausalLM(cfg).save_pretrained(tmp_path / "m", safe_serialization=True)
    with pytest.raises(ModelNotFoundError, match="cannot convert"):
        models.load(tmp_path / "m")


@pytest.mark.parametrize("text, message", [
    ("{not json", "JSONDecodeError"), ("", "JSONDecodeError"), ("[1, 2]", "not a JSON object"),
    ('{"steps": ["a", 1]}', "list of non-negative integers"), ('{"steps": 5}', "list of non-negative integers"),
    ('{"steps": [-5, 0]}', "list of non-negative integers"), ('{"steps": [0], "tokenizer": 5}', "folder path"),
])
def test_damaged_suite_json_is_one_typed_error(tmp_path, monkeypatch, text, message):
    (tmp_path / "models" / "s").mkdir(parents=True)
    (tmp_path / "models" / "s" / "suite.json").write_text(text)
    monkeypatch.setenv("INTERP_DATA", str(tmp_path))
    for call in (lambda: models.checkpoints("s"), lambda: models.checkpoint_path("s"), lambda: models.load("s")):
        with pytest.raises(ModelNotFoundError, match=message):
            call()


def test_fractional_step_and_missing_tokenizer_refused(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError, match="not an integer"):
        models.checkpoint_path(models.DEFAULT_MODEL, 2.7)
    (tmp_path / "models" / "s" / "step0").mkdir(parents=True)
    (tmp_path / "models" / "s" / "suite.json").write_text('{"steps": [0]}')
    monkeypatch.setenv("INTERP_DATA", str(tmp_path))  # no data/tokenizer there
    with pytest.raises(ModelNotFoundError, match="has no tokenizer files"):
        models.load_tokenizer("s")
