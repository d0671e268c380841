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
