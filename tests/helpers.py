"""Shared test helpers (importable from tests because pytest puts tests/ on sys.path)."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = str(Path(__file__).resolve().parents[1])

VOCAB = 300
CORPUS = [
    f"Story {i}: Alice met Bob in the garden. She gave him {i % 7} apples, and he said thanks. " * 3
    + f"def f{i}(x):\n    return x + {i}\n" for i in range(60)
]


def tiny_tokenizer():
    """A byte-level BPE tokenizer with VOCAB entries, trained in well under a second on CORPUS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<|endoftext|>", "<|padding|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", pad_token="<|padding|>")


def save_tiny_hf(path, arch: str, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    if arch == "neox":
        cfg = GPTNeoXConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=32, rotary_pct=0.25,
                            use_parallel_residual=True, tie_word_embeddings=False, bos_token_id=0, eos_token_id=0)
        model = GPTNeoXForCausalLM(cfg)
    else:
        cfg = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=32, n_ctx=32, bos_token_id=0,
                         eos_token_id=0)
        model = GPT2LMHeadModel(cfg)
    model.save_pretrained(path, safe_serialization=True)
    tiny_tokenizer().save_pretrained(path)
    return path


def extract_config(out, model_dir, data, **overrides):
    """An ExtractConfig for the tiny test model: ctx 32, small shards, resid_post hooks; any field can be overridden."""
    from interp.extract import ExtractConfig

    base = dict(out=str(out), model=str(model_dir), data=str(data), tokens=512, ctx=32, batch_size=4, shard_mb=0.01,
                hooks=["blocks.*.hook_resid_post"])
    base.update(overrides)
    return ExtractConfig(**base)


def spawn_ranks(fn, args: tuple, nprocs: int = 2) -> None:
    """torch.multiprocessing.spawn with the repository root on sys.path while it runs: spawned children unpickle
    `fn` from tests.<package>.<module>, which a bare `pytest` (no `python -m`) would not make importable."""
    import torch.multiprocessing as mp

    added = ROOT not in sys.path
    if added:
        sys.path.insert(0, ROOT)
    try:
        mp.spawn(fn, args=args, nprocs=nprocs, join=True)
    finally:
        if added:
            sys.path.remove(ROOT)


def shard_digests(folder) -> dict[str, str]:
    """sha256 of every .npy file of a cache folder, by name: two caches are bit-identical iff these are equal."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).glob("*.npy"))}


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m apps.cli ARGS` from the repository root (one thread); fails the test unless it exits 0."""
    env = env or {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "apps.cli", *map(str, args)], env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, res.stderr[-4000:]
    return res


def pretokenize(model_dir, data, out, tokens: int = 4096, ctx: int = 32, env: dict | None = None) -> Path:
    """`interp tokenize` the data into a .npy token file (what torchrun jobs read); returns its path."""
    run_cli("tokenize", "--model", model_dir, "--data", data, "--ctx", ctx, "--tokens", tokens, "--out", out, env=env)
    return Path(out)


def assert_findings_cite_their_numbers(result) -> None:
    """Every finding's verdict follows from its number and rule, and the number is the result's own (the summary
    value its key names, booleans counted as 0/1)."""
    import math

    assert result.findings, "the result states findings"
    for f in result.findings:
        assert f.consistent(), f
        if f.measured is not None and f.key in result.summary:
            value = result.summary[f.key]
            assert math.isclose(float(value), float(f.measured), rel_tol=1e-9, abs_tol=1e-12), (f.key, value, f)
