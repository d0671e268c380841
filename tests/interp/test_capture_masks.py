"""Padded batches with their attention mask capture exactly the rows of the same sequences captured one by one
without padding: decoders (HookedTransformer with rotary and with learned positions, every natively run
architecture) and encoders (BERT natively and as a raw HF module), right and left padding.

Float32; the padded forward runs attention over masked keys, so sums are reordered: compared to rtol 1e-4,
atol 1e-5.
"""

import pytest
import torch
from tiny_hf import bert_tokenizer, save_tiny_native, tiny_hf_model

from interp import models
from interp.capture import capture
from interp.errors import ConfigError, InterpError

LENGTHS = [5, 9, 7]
TOL = dict(rtol=1e-4, atol=1e-5)
PAD = 1
NATIVE = ["mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "phi3", "olmo2", "bert"]


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    root = tmp_path_factory.mktemp("masks")
    return {kind: models.load(save_tiny_native(root / kind, kind)) for kind in NATIVE}


def _sequences(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, 300, (n,), generator=g) for n in LENGTHS]


def _pad(seqs, side):
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), PAD)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        cols = slice(0, len(s)) if side == "right" else slice(width - len(s), width)
        ids[i, cols], mask[i, cols] = s, 1
    return ids, mask


def _one_by_one(model, seqs, hooks, positions):
    per = [capture(model, s[None], hooks=hooks, positions=positions or "drop:0") for s in seqs]
    return {name: torch.cat([p[name] for p in per]) for name in per[0]}


def _model(which, native, tiny_model, tiny_gpt2_dir):
    if which == "tl-neox":
        return tiny_model
    if which == "tl-gpt2":
        return models.load(tiny_gpt2_dir)
    if which == "hf-raw-bert":
        return tiny_hf_model("bert")  # a plain transformers module: module paths, mask and position ids passed on
    return native[which]


MODELS = ["tl-neox", "tl-gpt2", *NATIVE, "hf-raw-bert"]


@pytest.mark.parametrize("which", MODELS)
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("positions", [None, "drop:1", "last"])
def test_padded_batch_equals_sequences_one_by_one(which, side, positions, native, tiny_model, tiny_gpt2_dir):
    model = _model(which, native, tiny_model, tiny_gpt2_dir)
    hooks = "encoder.layer.*" if which == "hf-raw-bert" else "blocks.*.hook_resid_post"
    seqs = _sequences()
    ids, mask = _pad(seqs, side)
    got = capture(model, ids, hooks=hooks, positions=positions, attention_mask=mask)
    want = _one_by_one(model, seqs, hooks, positions)
    assert set(got) == set(want) and len(got) == 2
    n_rows = {None: sum(LENGTHS), "drop:1": sum(LENGTHS) - len(LENGTHS), "last": len(LENGTHS)}[positions]
    for name in want:
        assert got[name].shape[0] == n_rows
        torch.testing.assert_close(got[name], want[name], **TOL)


def test_batch_encoding_and_keywords(native):
    """A tokenizer's BatchEncoding (which used to fail with a bare AttributeError), a dict and keywords."""
    model = native["bert"]
    tok = bert_tokenizer()
    texts = ["Alice met Bob in the garden.", "She gave him apples", "thanks"]
    enc = tok(texts, padding=True, return_tensors="pt")
    assert not bool(enc["attention_mask"].all())
    got = capture(model, enc, hooks="blocks.1.hook_resid_post")["blocks.1.hook_resid_post"]
    want = torch.cat([capture(model, tok([t], return_tensors="pt")["input_ids"], hooks="blocks.1.hook_resid_post",
                              positions="drop:0")["blocks.1.hook_resid_post"] for t in texts])
    torch.testing.assert_close(got, want, **TOL)
    as_dict = capture(model, dict(enc), hooks="blocks.1.hook_resid_post")["blocks.1.hook_resid_post"]
    keywords = capture(model, input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                       hooks="blocks.1.hook_resid_post")["blocks.1.hook_resid_post"]
    lists = capture(model, tok(texts, padding=True), hooks="blocks.1.hook_resid_post")["blocks.1.hook_resid_post"]
    for other in (as_dict, keywords, lists):
        torch.testing.assert_close(other, got, rtol=0, atol=0)
    batched = capture(model, enc, hooks="blocks.1.hook_resid_post", batch_size=2)["blocks.1.hook_resid_post"]
    torch.testing.assert_close(batched, got, **TOL)


@pytest.mark.parametrize("bad, message", [
    ({"ids": torch.zeros(1, 3, dtype=torch.long)}, "no 'input_ids'"),
    ({"input_ids": torch.zeros(2, 3, dtype=torch.long), "attention_mask": torch.ones(2, 4)}, "shape"),
    ({"input_ids": torch.zeros(1, 3, dtype=torch.long), "attention_mask": torch.full((1, 3), 2)}, "other than 0"),
    ({"input_ids": [[1, 2], [3]]}, "not rectangular"),
])
def test_malformed_inputs_are_config_errors(native, bad, message):
    with pytest.raises(ConfigError, match=message):
        capture(native["qwen2"], bad, hooks="blocks.0.hook_resid_post")


def test_padded_batch_for_a_module_without_a_mask_is_refused():
    net = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 4))
    ids, mask = _pad([torch.tensor([1, 2, 3]), torch.tensor([4])], "right")
    with pytest.raises(InterpError, match="takes no attention_mask"):
        capture(net, ids, hooks="1", attention_mask=mask)
    full = capture(net, ids[:1], hooks="1", attention_mask=mask[:1])["1"]  # nothing padded: fine, rows
    assert full.shape == (3, 4)


def test_batch_encoding_into_a_hooked_transformer(tiny_model):
    """The same for transformer-lens: a left-padded BatchEncoding equals the texts one by one."""
    tok = tiny_model.tokenizer
    texts = ["Alice met Bob in the garden.", "thanks", "She gave him 3 apples, and he said thanks."]
    side, tok.padding_side = tok.padding_side, "left"
    try:
        enc = tok(texts, padding=True, return_tensors="pt")
    finally:
        tok.padding_side = side  # the model is shared by the session's tests
    assert not bool(enc["attention_mask"][:, 0].all())  # left padding
    got = capture(tiny_model, enc, hooks="blocks.1.hook_resid_post")["blocks.1.hook_resid_post"]
    want = torch.cat([capture(tiny_model, tok([t], return_tensors="pt")["input_ids"], hooks="blocks.1.hook_resid_post",
                              positions="drop:0")["blocks.1.hook_resid_post"] for t in texts])
    torch.testing.assert_close(got, want, **TOL)


def test_sentence_pairs_carry_token_type_ids(native):
    """BERT sentence pairs: segment B's token_type_ids reach the encoder. Every layer's rows equal Hugging Face's
    own hidden states of the same padded pair batch (ln2.hook_normalized of block L = hidden_states[L + 1]), and
    differ from the same ids with the segments dropped, so the test would see them lost."""
    model = native["bert"]
    tok = bert_tokenizer()
    firsts, seconds = ["Alice met Bob.", "She gave him apples in the garden"], ["He said thanks", "no"]
    enc = tok(firsts, seconds, padding=True, return_tensors="pt", return_token_type_ids=True)
    assert bool(enc["token_type_ids"].any()) and not bool(enc["attention_mask"].all())
    hooks = [f"blocks.{layer}.ln2.hook_normalized" for layer in range(model.cfg.n_layers)]
    got = capture(model, enc, hooks=hooks)
    with torch.no_grad():
        states = model.hf(**enc, output_hidden_states=True).hidden_states
    real = enc["attention_mask"].bool()
    for layer, name in enumerate(hooks):
        torch.testing.assert_close(got[name], states[layer + 1][real], rtol=0, atol=0)
    single = capture(model, input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], hooks=hooks[-1])
    assert (single[hooks[-1]] - got[hooks[-1]]).abs().max() > 1e-3
    keywords = capture(model, input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                       token_type_ids=enc["token_type_ids"], hooks=hooks[-1])
    torch.testing.assert_close(keywords[hooks[-1]], got[hooks[-1]], rtol=0, atol=0)


def test_segment_b_for_a_model_without_token_types_is_refused(native, tiny_model):
    """A decoder takes no token_type_ids: all-zero ones (a tokenizer's default) are dropped, segment B refused."""
    ids = torch.randint(3, 300, (2, 6))
    zeros, pairs = torch.zeros_like(ids), torch.zeros_like(ids)
    pairs[:, 3:] = 1
    for model in (native["qwen3"], tiny_model):
        plain = capture(model, ids, hooks="blocks.0.hook_resid_post")["blocks.0.hook_resid_post"]
        same = capture(model, {"input_ids": ids, "token_type_ids": zeros},
                       hooks="blocks.0.hook_resid_post")["blocks.0.hook_resid_post"]
        torch.testing.assert_close(same, plain, rtol=0, atol=0)
        with pytest.raises(ConfigError, match="segment B"):
            capture(model, {"input_ids": ids, "token_type_ids": pairs}, hooks="blocks.0.hook_resid_post")
    with pytest.raises(ConfigError, match="token_type_ids has shape"):
        capture(native["bert"], {"input_ids": ids, "token_type_ids": pairs[:, :4]}, hooks="blocks.0.hook_resid_post")
