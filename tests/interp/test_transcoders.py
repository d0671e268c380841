"""Transcoders spliced by interp.intervene, against hand-written hooks that record the input activation and replace
the output by the transcoder's prediction computed from its weights; sparsify transcoders against a float64
transcription of sparsify's transcode forward; save/load round trips with both hooks; one-line refusals.

The hand computations (`_predict`) use only the weights: f = act(x W_enc + b_enc) (ReLU, or TopK_k of ReLU),
f' = f with chosen latents zeroed, ŷ = f' W_dec + b_dec (+ x W_skipᵀ), and with the error kept
y + (decode(f') − decode(f)).
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from interp.errors import ConfigError
from interp.intervene import Edit, intervene
from interp.saes import load_sae, sae_entries, save_sae
from interp.transcoders import TopKSkipTranscoder, TopKTranscoder

IN, OUT = "blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out"
D_SAE, K = 40, 6


def _transcoder(d_in: int, d_out: int, kind: str = "relu", seed: int = 0, hook: str | None = IN,
                hook_out: str | None = OUT):
    """A random sae-lens transcoder ("relu": sae-lens' Transcoder; "topk" / "topk_skip": interp's)."""
    from sae_lens import Transcoder, TranscoderConfig

    from interp.transcoders import TopKSkipTranscoderConfig, TopKTranscoderConfig

    torch.manual_seed(seed)
    common = dict(d_in=d_in, d_sae=D_SAE, d_out=d_out, apply_b_dec_to_input=False)
    if kind == "relu":
        tc = Transcoder(TranscoderConfig(**common))
    elif kind == "topk":
        tc = TopKTranscoder(TopKTranscoderConfig(k=K, **common))
    else:
        tc = TopKSkipTranscoder(TopKSkipTranscoderConfig(k=K, **common))
    if hook:
        tc.cfg.metadata.hook_name = hook
    if hook_out:
        tc.cfg.metadata.hook_name_out = hook_out
    with torch.no_grad():
        for name, p in tc.named_parameters():
            p.copy_(torch.randn_like(p) * (0.3 if name in ("W_enc", "b_enc") else 0.05))
    return tc.eval()


def _latents(tc, x: torch.Tensor) -> torch.Tensor:
    """f from the weights: ReLU(x W_enc + b_enc), and for TopK transcoders only the k largest kept."""
    pre = torch.relu(x @ tc.W_enc + tc.b_enc)
    if isinstance(tc, TopKTranscoder):
        top = pre.topk(tc.cfg.k, dim=-1)
        pre = torch.zeros_like(pre).scatter(-1, top.indices, top.values)
    return pre


def _predict(tc, x: torch.Tensor, y: torch.Tensor, zero=(), keep_error: bool = False) -> torch.Tensor:
    f = _latents(tc, x)
    g = f.clone()
    g[..., list(zero)] = 0.0
    if keep_error:
        return y + ((g @ tc.W_dec + tc.b_dec) - (f @ tc.W_dec + tc.b_dec))  # y + decode(f') − decode(f)
    out = g @ tc.W_dec + tc.b_dec
    return out + x @ tc.W_skip.T if hasattr(tc, "W_skip") else out


@pytest.fixture(scope="module")
def toy():
    from interp.models import load

    return load("toy-pythia-4l")


@pytest.fixture()
def toks():
    return torch.randint(0, 500, (2, 12), generator=torch.Generator().manual_seed(3))


def _hand_tl(model, tc, tokens, zero=(), keep_error=False) -> torch.Tensor:
    rec: dict[str, torch.Tensor] = {}

    def grab(x, hook):
        rec["x"] = x
        return x

    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[
            (IN, grab), (OUT, lambda y, hook: _predict(tc, rec["x"], y, zero, keep_error))])


def _firing(tc, model, tokens) -> int:
    with torch.no_grad():
        x = model.run_with_cache(tokens, names_filter=IN)[1][IN]
    f = _latents(tc, x)
    counts = (f > 0).sum((0, 1))
    assert 0 < int(counts.max()) < f.shape[0] * f.shape[1]  # it fires at some positions, not all
    return int(counts.argmax())


@pytest.mark.parametrize("kind", ["relu", "topk", "topk_skip"])
def test_tl_splice_equals_a_hand_hook_loop(toy, toks, kind):
    d = toy.cfg.d_model
    tc = _transcoder(d, d, kind)
    with intervene(toy, sae=tc) as iv:
        out = iv.run(toks, capture=[IN, OUT])
    want = _hand_tl(toy, tc, toks)
    torch.testing.assert_close(out.logits, want, rtol=0, atol=1e-6)
    assert out.kl > 1e-4  # the splice changes the model
    torch.testing.assert_close(out.captures[OUT], _predict(tc, out.captures[IN], None), rtol=0, atol=1e-6)
    with intervene(toy, sae=tc, keep_error=True) as iv:  # no edits, error kept: the clean forward
        kept = iv.run(toks)
    torch.testing.assert_close(kept.logits, kept.clean_logits, rtol=0, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(kept.clean_logits, toy(toks), rtol=0, atol=0)


@pytest.mark.parametrize("keep_error", [False, True])
def test_tl_latent_ablation_equals_the_hand_loop_with_it_zeroed(toy, toks, keep_error):
    d = toy.cfg.d_model
    tc = _transcoder(d, d, "relu", seed=1)
    i = _firing(tc, toy, toks)
    with intervene(toy, sae=tc, edits=[Edit([i], "ablate")], keep_error=keep_error) as iv:
        out = iv.run(toks)
    torch.testing.assert_close(out.logits, _hand_tl(toy, tc, toks, zero=[i], keep_error=keep_error),
                               rtol=0, atol=1e-6)
    assert out.kl > 0


def test_steering_at_the_input_hook_is_what_the_transcoder_reads(toy, toks):
    d = toy.cfg.d_model
    tc = _transcoder(d, d, "relu", seed=4)
    vec = torch.randn(d, generator=torch.Generator().manual_seed(5))
    rec: dict[str, torch.Tensor] = {}

    def grab(x, hook):
        rec["x"] = x + vec
        return rec["x"]

    with torch.no_grad():
        want = toy.run_with_hooks(toks, fwd_hooks=[(IN, grab), (OUT, lambda y, hook: _predict(tc, rec["x"], y))])
    with intervene(toy, sae=tc, steer=vec, steer_hook=IN) as iv:
        out = iv.run(toks)
    torch.testing.assert_close(out.logits, want, rtol=0, atol=1e-6)


def test_native_qwen3_splice_equals_torch_module_hooks(tmp_path):
    from tiny_hf import save_tiny_native

    from interp.models import load

    model = load(save_tiny_native(tmp_path / "qwen3", "qwen3"))
    tokens = torch.randint(3, 50, (2, 9), generator=torch.Generator().manual_seed(0))
    d = model.cfg.d_model
    tc = _transcoder(d, d, "topk", seed=2, hook="blocks.0.ln2.hook_normalized", hook_out="blocks.0.hook_mlp_out")
    layer = model.hf.model.layers[0]

    def manual(zero=(), keep_error=False) -> torch.Tensor:
        rec: dict[str, torch.Tensor] = {}
        handles = [layer.post_attention_layernorm.register_forward_hook(lambda m, a, o: rec.update(x=o)),
                   layer.mlp.register_forward_hook(lambda m, a, o: _predict(tc, rec["x"], o, zero, keep_error))]
        try:
            with torch.no_grad():
                return model(tokens).logits
        finally:
            for h in handles:
                h.remove()

    with intervene(model, sae=tc) as iv:
        out = iv.run(tokens)
    torch.testing.assert_close(out.logits, manual(), rtol=0, atol=1e-6)
    assert out.kl > 1e-4
    with intervene(model, sae=tc, keep_error=True) as iv:
        kept = iv.run(tokens)
    torch.testing.assert_close(kept.logits, kept.clean_logits, rtol=0, atol=1e-6)
    with intervene(model, sae=tc, edits=[Edit([3, 7])], keep_error=True) as iv:
        ablated = iv.run(tokens)
    torch.testing.assert_close(ablated.logits, manual(zero=[3, 7], keep_error=True), rtol=0, atol=1e-6)


def test_plain_module_splice_by_module_paths():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Embedding(11, 6), torch.nn.Linear(6, 8), torch.nn.Tanh(),
                              torch.nn.Linear(8, 11)).eval()
    tokens = torch.randint(0, 11, (2, 7), generator=torch.Generator().manual_seed(1))
    tc = _transcoder(8, 11, "relu", seed=3, hook="2", hook_out="3")
    with intervene(net, sae=tc) as iv:
        out = iv.run(tokens)
    with torch.no_grad():
        want = _predict(tc, torch.tanh(net[1](net[0](tokens))), None)
    torch.testing.assert_close(out.logits, want, rtol=0, atol=1e-6)


def _write_sparsify_tc(folder, d=12, skip=False, seed=0) -> dict[str, torch.Tensor]:
    """A sparsify transcoder folder (SparseCoder.save_to_disk's layout) from random weights, returned in float64."""
    g = torch.Generator().manual_seed(seed)
    w = {"encoder.weight": torch.randn(D_SAE, d, generator=g), "encoder.bias": torch.randn(D_SAE, generator=g) * 0.1,
         "W_dec": torch.randn(D_SAE, d, generator=g), "b_dec": torch.randn(d, generator=g) * 0.1}
    if skip:
        w["W_skip"] = torch.randn(d, d, generator=g) * 0.2
    folder.mkdir(parents=True)
    save_file(w, str(folder / "sae.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({
        "activation": "topk", "expansion_factor": 32, "normalize_decoder": True, "num_latents": D_SAE, "k": K,
        "multi_topk": False, "skip_connection": skip, "transcode": True, "d_in": d}))
    return {k: v.double() for k, v in w.items()}


def _sparsify_forward(w, x):
    """sparsify's SparseCoder with transcode=True, in float64: no b_dec on the input, ReLU, top-k, decode."""
    pre = torch.relu(x @ w["encoder.weight"].T + w["encoder.bias"])
    top = pre.topk(K, dim=-1, sorted=False)
    f = torch.zeros_like(pre).scatter(-1, top.indices, top.values)
    out = f @ w["W_dec"] + w["b_dec"]
    return f, (out + x @ w["W_skip"].mT if "W_skip" in w else out)


@pytest.mark.parametrize("skip", [False, True])
def test_sparsify_transcoder_loads_equal_to_sparsify_and_round_trips(tmp_path, skip):
    w = _write_sparsify_tc(tmp_path / "run" / "layers.2.mlp", skip=skip)
    tc = load_sae(tmp_path / "run" / "layers.2.mlp")
    assert type(tc) is (TopKSkipTranscoder if skip else TopKTranscoder)
    assert (tc.cfg.metadata.hook_name, tc.cfg.metadata.hook_name_out) == ("blocks.2.ln2.hook_normalized",
                                                                           "blocks.2.hook_mlp_out")
    x = torch.randn(64, 12, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    f_want, y_want = _sparsify_forward(w, x)
    f = tc.encode(x.float())
    assert 0 < int((f != 0).sum()) < f.numel() and int((f != 0).sum(-1).max()) <= K
    torch.testing.assert_close(f.double(), f_want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tc(x.float()).double(), y_want, rtol=1e-5, atol=1e-5)  # decode (+ skip)
    (entry,) = sae_entries(tmp_path / "run")
    assert (entry["hook"], entry["hook_out"]) == ("blocks.2.ln2.hook_normalized", "blocks.2.hook_mlp_out")
    # save_sae -> load_sae: same class, both hooks, same function
    back = load_sae(save_sae(tc, tmp_path / "saved", storage_dtype="float32"))
    assert type(back) is type(tc) and back.cfg.k == K
    assert (back.cfg.metadata.hook_name, back.cfg.metadata.hook_name_out) == (tc.cfg.metadata.hook_name,
                                                                               tc.cfg.metadata.hook_name_out)
    torch.testing.assert_close(back(x.float()), tc(x.float()), rtol=0, atol=0)
    assert sae_entries(tmp_path / "saved")[0]["hook_out"] == "blocks.2.hook_mlp_out"


@pytest.mark.parametrize("arch", ["Transcoder", "JumpReLUTranscoder", "SkipTranscoder", "JumpReLUSkipTranscoder"])
def test_sae_lens_transcoders_round_trip_with_both_hooks(tmp_path, arch):
    import sae_lens

    tc = getattr(sae_lens, arch)(getattr(sae_lens, arch + "Config")(d_in=10, d_sae=D_SAE, d_out=14,
                                                                    apply_b_dec_to_input=False))
    tc.cfg.metadata.hook_name, tc.cfg.metadata.hook_name_out = IN, OUT
    with torch.no_grad():
        for p in tc.parameters():
            p.copy_(torch.rand_like(p) * 0.2 - 0.05)
    back = load_sae(save_sae(tc, tmp_path / "tc", storage_dtype="float32"))
    assert type(back) is type(tc)
    assert (back.cfg.metadata.hook_name, back.cfg.metadata.hook_name_out, back.cfg.d_out) == (IN, OUT, 14)
    x = torch.randn(16, 10, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(back(x), tc(x), rtol=0, atol=0)


def test_sparsify_block_transcoder_hooks_and_unknown_hookpoints(tmp_path):
    _write_sparsify_tc(tmp_path / "layers.3")
    tc = load_sae(tmp_path / "layers.3")
    assert (tc.cfg.metadata.hook_name, tc.cfg.metadata.hook_name_out) == ("blocks.3.hook_resid_pre",
                                                                           "blocks.3.hook_resid_post")
    _write_sparsify_tc(tmp_path / "embed_out")
    with pytest.raises(ConfigError, match="hook_out="):
        load_sae(tmp_path / "embed_out", hook="h")
    tc = load_sae(tmp_path / "embed_out", hook="h", hook_out="o")
    assert (tc.cfg.metadata.hook_name, tc.cfg.metadata.hook_name_out) == ("h", "o")


def test_refusals(toy, toks):
    d = toy.cfg.d_model
    with pytest.raises(ConfigError, match="names no output hook.*hook_out="):
        with intervene(toy, sae=_transcoder(d, d, hook_out=None)):
            pass
    backwards = _transcoder(d, d, hook=IN, hook_out="blocks.0.hook_mlp_out")  # the output fires first
    with pytest.raises(ConfigError, match="fired before its input hook"):
        with intervene(toy, sae=backwards) as iv:
            iv.run(toks)
    with pytest.raises(ConfigError, match="width"):
        with intervene(toy, sae=_transcoder(d, 7)) as iv:
            iv.run(toks)
