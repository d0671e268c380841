"""Tiny random-weight Hugging Face models of the natively run architectures, saved as folders with a tokenizer."""

from pathlib import Path

import torch

from helpers import CORPUS, VOCAB, tiny_tokenizer

NATIVE_KINDS = ["mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "phi3", "olmo2", "llama", "bert"]

_COMMON = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=64, pad_token_id=1, bos_token_id=0, eos_token_id=0,
               tie_word_embeddings=False)


def tiny_config(kind: str):
    """A 2-layer config of `kind`; the Gemmas get a sliding window shorter than the test sequences."""
    import transformers as tf

    if kind == "bert":
        return tf.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=64, max_position_embeddings=64, pad_token_id=0)
    cls = {"mistral": tf.MistralConfig, "qwen2": tf.Qwen2Config, "qwen3": tf.Qwen3Config, "gemma2": tf.Gemma2Config,
           "gemma3_text": tf.Gemma3TextConfig, "phi3": tf.Phi3Config, "olmo2": tf.Olmo2Config,
           "llama": tf.LlamaConfig}[kind]
    extra = {}
    if kind in ("qwen3", "gemma2", "gemma3_text"):
        extra["head_dim"] = 8
    if kind in ("gemma2", "gemma3_text"):
        extra["sliding_window"] = 6
    return cls(**_COMMON, **extra)


def bert_tokenizer():
    """A WordPiece tokenizer that wraps every sequence as [CLS] ... [SEP], as BERT's does."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(CORPUS, trainer=trainers.WordPieceTrainer(vocab_size=VOCAB, special_tokens=special))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def bos_tokenizer():
    """The tiny byte-level tokenizer, but adding BOS in front of every sequence (as Llama's tokenizer does)."""
    from tokenizers import processors

    tok = tiny_tokenizer()
    inner = tok.backend_tokenizer
    bos = tok.bos_token_id
    inner.post_processor = processors.TemplateProcessing(single="<|endoftext|> $A", special_tokens=[
        ("<|endoftext|>", bos)])
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=inner, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", pad_token="<|padding|>")


def tiny_hf_model(kind: str, seed: int = 0):
    from transformers import AutoModel, AutoModelForCausalLM

    torch.manual_seed(seed)
    cfg = tiny_config(kind)
    return (AutoModel if kind == "bert" else AutoModelForCausalLM).from_config(cfg).eval()


def save_tiny_native(path, kind: str, tokenizer=None, seed: int = 0) -> Path:
    """Save a tiny `kind` model with a tokenizer (WordPiece [CLS]/[SEP] for BERT, byte BPE otherwise)."""
    path = Path(path)
    tiny_hf_model(kind, seed).save_pretrained(path, safe_serialization=True)
    (tokenizer or (bert_tokenizer() if kind == "bert" else tiny_tokenizer())).save_pretrained(path)
    return path
