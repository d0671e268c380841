"""Natively run Hugging Face architectures: every canonical hook equals what the HF forward computes.

References are the HF model's own `output_hidden_states`, its block outputs (read with a hook set here) and the
residual-stream identities the names promise (resid_mid = resid_pre + attn_out, ...), recomputed with the model's
own norm and projection modules. Float32 throughout; the sums are the same operations as in the forward, so the
tolerance is 1e-6.
"""

import pytest
import torch
from tiny_hf import NATIVE_KINDS, save_tiny_native, tiny_hf_model

from interp import models
from interp.capture import capture, hook_names
from interp.models.native import NativeModel

KINDS = [k for k in NATIVE_KINDS if k != "llama"]  # Llama folders are converted to a HookedTransformer
TOL = dict(rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("native")
    return {kind: save_tiny_native(root / kind, kind) for kind in KINDS}


def _block_outputs(hf, layers_path):
    """The output of every block of the HF model, recorded by hooks registered here."""
    blocks = dict(hf.named_modules())[layers_path]
    outs = []
    handles = [b.register_forward_hook(lambda m, i, o: outs.append(o[0] if isinstance(o, tuple) else o))
               for b in blocks]
    return outs, handles


@pytest.mark.parametrize("kind", KINDS)
def test_canonical_hooks_equal_the_hf_forward(folders, kind):
    model = models.load(folders[kind])
    assert isinstance(model, NativeModel) and model.tokenizer is not None
    assert (model.cfg.n_layers, model.cfg.d_model, model.cfg.d_vocab) == (2, 32, 300)
    hf = model.hf
    ids = torch.randint(3, 300, (2, 10), generator=torch.Generator().manual_seed(0))
    got = capture(model, ids, hooks=["blocks.**", "ln_final.*"] if kind != "bert" else "blocks.**")
    base = "" if hf.base_model is hf else hf.base_model_prefix + "."
    layers_path = base + model.spec.layers
    outs, handles = _block_outputs(hf, layers_path)
    with torch.no_grad():
        ref = hf(input_ids=ids, output_hidden_states=True)
    for h in handles:
        h.remove()
    hs = ref.hidden_states
    blocks = dict(hf.named_modules())[layers_path]
    for L, block in enumerate(blocks):
        g = {k.split(".", 2)[2]: v for k, v in got.items() if k.startswith(f"blocks.{L}.")}
        torch.testing.assert_close(g["hook_resid_pre"], hs[L], **TOL)
        torch.testing.assert_close(g["hook_resid_mid"], g["hook_resid_pre"] + g["hook_attn_out"], **TOL)
        with torch.no_grad():
            if kind == "bert":
                ln1, ln2 = block.attention.output.LayerNorm, block.output.LayerNorm
                torch.testing.assert_close(g["ln1.hook_normalized"], ln1(g["hook_resid_mid"]), **TOL)
                torch.testing.assert_close(g["hook_resid_post"], g["ln1.hook_normalized"] + g["hook_mlp_out"], **TOL)
                torch.testing.assert_close(g["ln2.hook_normalized"], ln2(g["hook_resid_post"]), **TOL)
                torch.testing.assert_close(g["ln2.hook_normalized"], hs[L + 1], **TOL)
                torch.testing.assert_close(g["hook_mlp_out"], block.output.dense(g["mlp.hook_post"]), **TOL)
                continue
            torch.testing.assert_close(g["hook_resid_post"], outs[L], **TOL)
            if L + 1 < len(blocks):
                torch.testing.assert_close(g["hook_resid_post"], hs[L + 1], **TOL)
            torch.testing.assert_close(g["hook_resid_post"], g["hook_resid_mid"] + g["hook_mlp_out"], **TOL)
            down = block.mlp.down_proj(g["mlp.hook_post"])
            post = getattr(block, "post_feedforward_layernorm", None)
            torch.testing.assert_close(g["hook_mlp_out"], post(down) if post is not None else down, **TOL)
            if kind != "olmo2":  # OLMo 2 normalises only after attention and MLP
                torch.testing.assert_close(g["ln1.hook_normalized"], block.input_layernorm(g["hook_resid_pre"]), **TOL)
                ln2 = block.pre_feedforward_layernorm if kind.startswith("gemma") else block.post_attention_layernorm
                torch.testing.assert_close(g["ln2.hook_normalized"], ln2(g["hook_resid_mid"]), **TOL)
    if kind != "bert":
        torch.testing.assert_close(got["ln_final.hook_normalized"], hs[-1], **TOL)  # HF's last entry is normed


@pytest.mark.parametrize("kind", KINDS)
def test_module_paths_still_work_and_star_stays_in_one_component(folders, kind):
    model = models.load(folders[kind])
    names = hook_names(model)
    paths = [n for n in names if not n.startswith(("blocks.", "ln_final."))]
    assert paths and all(p in dict(model.hf.named_modules()) for p in paths)
    some = paths[len(paths) // 2]
    with torch.no_grad():
        ref = {}
        h = dict(model.hf.named_modules())[some].register_forward_hook(lambda m, i, o: ref.setdefault("x", o))
        ids = torch.randint(3, 300, (1, 6), generator=torch.Generator().manual_seed(2))
        got = capture(model, ids, hooks=some, stop_early=False)[some]
        h.remove()
    # the hook above fired during capture's forward too: both saw the same tensor
    expected = ref["x"][0] if isinstance(ref["x"], tuple) else ref["x"]
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert set(capture(model, ids, hooks="blocks.*.hook_resid_post")) == {"blocks.0.hook_resid_post",
                                                                           "blocks.1.hook_resid_post"}


def test_a_llama_module_gets_the_same_aliases_as_its_converted_folder(tmp_path):
    """An HF Llama handed over from Python (a factory's model) is wrapped natively; its resid_post equals the
    HookedTransformer converted from the same weights, and its attn.hook_z equals TL's hook_z flattened over heads."""
    from interp.models.factory import as_model

    hf = tiny_hf_model("llama")
    hf.save_pretrained(tmp_path / "llama", safe_serialization=True)
    native = as_model(hf)
    converted = models.load(tmp_path / "llama")
    ids = torch.randint(3, 300, (2, 9), generator=torch.Generator().manual_seed(3))
    a = capture(native, ids, hooks="blocks.*.hook_resid_post")
    b = capture(converted, ids, hooks="blocks.*.hook_resid_post")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)
    za = capture(native, ids, hooks="blocks.*.attn.hook_z")  # native: flattened [b, p, h·d]; TL: [b, p, h, d]
    zb = capture(converted, ids, hooks="blocks.*.attn.hook_z")
    for name in za:
        torch.testing.assert_close(za[name], zb[name].flatten(-2), rtol=1e-4, atol=1e-5)


def test_unknown_architecture_lists_both_kinds(tmp_path):
    from transformers import GPTJConfig, GPTJForCausalLM

    from interp.errors import ModelNotFoundError

    GPTJForCausalLM(GPTJConfig(vocab_size=300, n_embd=32, n_layer=1, n_head=4, n_positions=32, rotary_dim=4)
                    ).save_pretrained(tmp_path / "gptj", safe_serialization=True)
    with pytest.raises(ModelNotFoundError, match="cannot convert") as err:
        models.load(tmp_path / "gptj")
    assert "gemma2" in err.value.hint and "GPTNeoXForCausalLM" in err.value.hint


@pytest.mark.parametrize("kind", KINDS)
def test_hook_z_is_the_output_projections_input(folders, kind):
    """blocks.L.attn.hook_z equals what a plain forward pre-hook on the attention's output projection receives
    ([batch, pos, n_heads·d_head], flattened as o_proj consumes it); an edit there equals the same edit made by a
    plain pre-hook (the logits of both forwards agree)."""
    from interp.intervene import edit_hooks

    model = models.load(folders[kind])
    hf = model.hf
    proj = "attention.output.dense" if kind == "bert" else "self_attn.o_proj"
    layers = dict(hf.named_modules())[("" if hf.base_model is hf else hf.base_model_prefix + ".") + model.spec.layers]
    ids = torch.randint(3, 300, (2, 7), generator=torch.Generator().manual_seed(4))
    seen: dict[int, torch.Tensor] = {}
    handles = [block.get_submodule(proj).register_forward_pre_hook(
        lambda m, args, L=L: seen.__setitem__(L, args[0].detach().clone())) for L, block in enumerate(layers)]
    try:
        got = capture(model, ids, hooks="blocks.*.attn.hook_z", stop_early=False)
    finally:
        for h in handles:
            h.remove()
    heads = hf.config.num_attention_heads
    for L in range(len(layers)):
        z = got[f"blocks.{L}.attn.hook_z"]
        assert z.shape == (2, 7, heads * (getattr(hf.config, "head_dim", None) or hf.config.hidden_size // heads))
        torch.testing.assert_close(z, seen[L], rtol=0, atol=0)

    def halve_head0(x):
        d = x.shape[-1] // heads
        return torch.cat([x[..., :d] * 0.5, x[..., d:]], -1)

    with torch.no_grad(), edit_hooks(model, {"blocks.1.attn.hook_z": halve_head0}):
        edited = model(ids)
    handle = layers[1].get_submodule(proj).register_forward_pre_hook(lambda m, args: (halve_head0(args[0]),))
    try:
        with torch.no_grad():
            by_hand = model(ids)
    finally:
        handle.remove()
    key = "last_hidden_state" if kind == "bert" else "logits"
    torch.testing.assert_close(getattr(edited, key), getattr(by_hand, key), rtol=0, atol=0)
    with torch.no_grad():
        assert not torch.equal(getattr(model(ids), key), getattr(edited, key))  # the edit did something


@pytest.mark.parametrize("kind", ["qwen3", "mistral"])
def test_a_float64_conversion_has_exact_rotary_tables(folders, kind):
    """backend="transformer_lens" in float64: the rotary tables equal the float64 formula (loading the converted
    weights had left them rounded through float32, 3e-8 off), so float64 methods see float64 positions."""
    tl = models.load(folders[kind], backend="transformer_lens", dtype="float64")
    for block in tl.blocks:
        attn = block.attn
        n = attn.rotary_sin.shape[0]
        pos = torch.arange(n, dtype=torch.float64)[:, None]
        half = tl.cfg.rotary_dim // 2
        inv = attn._rotary_base() ** (-torch.arange(half, dtype=torch.float64) / half)
        angles = torch.cat([pos * inv, pos * inv], -1)  # NeoX layout: pairs (j, j + half), as Llama-family models
        torch.testing.assert_close(attn.rotary_sin, angles.sin(), rtol=0, atol=1e-12)  # 3e-8 before
        torch.testing.assert_close(attn.rotary_cos, angles.cos(), rtol=0, atol=1e-12)
