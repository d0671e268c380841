"""Byte-level BPE tokenizer of the toy suite, trained with `tokenizers` and saved in Hugging Face format."""

from __future__ import annotations

import json
from pathlib import Path

from interp.errors import ConfigError

SPECIAL_TOKENS = ["<|endoftext|>", "<|padding|>"]  # ids 0 and 1, as in Pythia's tokenizer
REQUIRED_SINGLE = [" she", " he", " her", " him", " #", " //", "):", ")", " is", " are"]


def train_tokenizer(texts: list[str], vocab_size: int = 1024):
    """Train a byte-level BPE on `texts` -> `PreTrainedTokenizerFast` (no BOS/EOS added on encode)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 300:
        raise ConfigError(f"vocab_size {vocab_size} is too small", hint="use at least 300 (256 bytes + merges)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    # The delimiter is a special token: strip it so it never enters merges.
    tok.train_from_iterator([t.replace(SPECIAL_TOKENS[0], "") for t in texts], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIAL_TOKENS[0], eos_token=SPECIAL_TOKENS[0],
                                   unk_token=SPECIAL_TOKENS[0], pad_token=SPECIAL_TOKENS[1])


def single_token_report(tokenizer, words: list[str] | None = None) -> dict[str, bool]:
    """Which of `words` (default: pronouns and code markers) encode to exactly one token."""
    words = REQUIRED_SINGLE if words is None else words
    return {w: len(tokenizer.encode(w, add_special_tokens=False)) == 1 for w in words}


def save_tokenizer(tokenizer, out_dir: Path) -> None:
    """save_pretrained, with tokenizer_class set to the name both transformers 4.x and 5.x resolve."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out_dir))
    cfg_path = out_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg.pop("model_max_length", None)
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")


def load_tokenizer(path: Path):
    """Reload a saved tokenizer offline."""
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    if not (path / "tokenizer.json").exists():
        raise ConfigError(f"no tokenizer.json in {path}", hint="run interp.toy.build_corpus first")
    return PreTrainedTokenizerFast.from_pretrained(str(path))
