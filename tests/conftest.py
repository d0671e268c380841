"""Test-wide settings: offline, deterministic, few threads."""

import os
import socket

import pytest
import torch

from helpers import CORPUS, VOCAB, save_tiny_hf, tiny_tokenizer  # noqa: F401

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("INTERP_QUIET", "1")  # analyses print no stage lines or bars in tests (interp.progress)
# Triton kernels run in its CPU interpreter here. This must be set before anything imports triton: kernels decorated
# while it is unset are compiled-mode kernels that the interpreter then refuses to call.
os.environ.setdefault("TRITON_INTERPRET", "1")

_LOOPBACK = ("127.", "::1", "localhost", "0.0.0.0")
_real_connect = socket.socket.connect


def _guarded_connect(sock, address):
    """The suite runs with the network blocked: only loopback (gloo, the headless browser) and Unix sockets."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        host = str(address[0])
        if not host.startswith(_LOOPBACK):
            raise OSError(f"network access blocked in tests (tried {host}:{address[1]})")
    return _real_connect(sock, address)


socket.socket.connect = _guarded_connect



@pytest.fixture(scope="session")
def text_file(tmp_path_factory):
    """A jsonl corpus of 180 short documents (about 23k tokens with the tiny tokenizer)."""
    import json

    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in CORPUS * 3))
    return path


@pytest.fixture(scope="session")
def tiny_neox_dir(tmp_path_factory):
    """A random-weight 2-layer GPT-NeoX (Pythia architecture) saved as a Hugging Face folder."""
    return save_tiny_hf(tmp_path_factory.mktemp("neox") / "tiny-neox", "neox")


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory):
    """A random-weight 2-layer GPT-2 saved as a Hugging Face folder."""
    return save_tiny_hf(tmp_path_factory.mktemp("gpt2") / "tiny-gpt2", "gpt2")


@pytest.fixture(scope="session")
def tiny_model(tiny_neox_dir):
    """The tiny GPT-NeoX as an unprocessed HookedTransformer."""
    from interp.models import load

    return load(tiny_neox_dir)


@pytest.fixture()
def tokens():
    return torch.randint(0, VOCAB, (3, 16), generator=torch.Generator().manual_seed(1))
