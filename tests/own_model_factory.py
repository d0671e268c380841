"""Factories for `--model own_model_factory:NAME` in the tests (tests/ is on sys.path)."""

import torch
from tiny_hf import bos_tokenizer, tiny_hf_model

from helpers import VOCAB, tiny_tokenizer


def qwen2_pair():
    """(a Hugging Face Qwen2, a tokenizer that adds BOS): wrapped natively, canonical hook names."""
    return tiny_hf_model("qwen2", seed=5), bos_tokenizer()


class TinyLM(torch.nn.Module):
    """A plain module: hook names are its module paths."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(7)
        self.embed = torch.nn.Embedding(VOCAB, 16)
        self.mix = torch.nn.Linear(16, 16)
        self.out = torch.nn.Linear(16, VOCAB)

    def forward(self, ids):
        return self.out(torch.tanh(self.mix(self.embed(ids))))


def plain_with_attribute():
    model = TinyLM()
    model.tokenizer = tiny_tokenizer()
    return model


def plain_without_tokenizer():
    return TinyLM()
