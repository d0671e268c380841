"""LIB's language-model mode on modern decoders (RMSNorm, rotary, grouped-query heads, gated MLPs, Qwen3's q/k
norms), run natively by interp and converted to transformer-lens for LIB's folded-bias sections.

(a) on tiny random Qwen2 / Mistral (sliding window shorter than the sequence) / Qwen3 / Phi-3 / Llama folders (4
    query heads, 2 key/value heads, every weight randomised), float64: the LIB model's activations at every node
    layer equal the Hugging Face model's own hidden states (resid_pre = the layer input, unembed = the final-normed
    state) and logits, and each section applied to transformer-lens' activation at its node layer gives TL's
    activation at the next one (run_with_cache); with every TL bias randomised as well, the sections still equal TL
    and every bias multiplies the bias coordinate (a section maps [0, c=0] to 0);
(b) the section Jacobians LIB builds from (`section_jacobian`, `torch.func` for these sections, which have no
    closed form) equal torch.autograd.functional.jacobian of the section, per sample and for integration points α≠1;
(c) `run(Config(model=<native folder>))` end to end: a result with findings whose provenance and summary say the
    model was converted; a model that does not convert is refused in one line.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

pytest.importorskip("transformer_lens")
from tiny_hf import save_tiny_native, tiny_config  # noqa: E402

from analyses.lib import Config, run  # noqa: E402
from analyses.lib.jacobian import section_jacobian  # noqa: E402
from analyses.lib.studies import _as_hooked  # noqa: E402
from analyses.lib.tl_sections import transformer_lib_model  # noqa: E402
from helpers import tiny_tokenizer  # noqa: E402
from interp import models  # noqa: E402
from interp.errors import ConfigError  # noqa: E402

torch.set_num_threads(1)

KINDS = [("qwen2", {}), ("mistral", {"sliding_window": 6}), ("qwen3", {}), ("phi3", {}), ("llama", {})]
IDS = [k + ("-sw6" if o else "") for k, o in KINDS]


def save_random(path, kind: str, seed: int = 0, **overrides):
    """A folder with a tiny `kind` model whose every weight is random (norm gains 1 + 0.3·N(0,1), other weights and
    biases N(0, 0.3²)), config fields overridden, and the tiny tokenizer."""
    from transformers import AutoModelForCausalLM

    cfg = tiny_config(kind)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    torch.manual_seed(seed)
    hf = AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.copy_(1 + 0.3 * torch.randn_like(p)) if "norm" in name else p.normal_(0, 0.3)
    hf.save_pretrained(path, safe_serialization=True)
    tiny_tokenizer().save_pretrained(path)
    return path


def node_layers(L: int) -> list[str]:
    """Every node layer of a sequential L-block model, in forward order."""
    pts = [f"blocks.{i}.hook_resid_{w}" for i in range(L) for w in ("pre", "mid")]
    return pts + [f"blocks.{L - 1}.hook_resid_post", "unembed", "output"]


def tl_acts(tl, tokens: torch.Tensor, nodes: list[str]) -> list[torch.Tensor]:
    """transformer-lens' own activations at the node layers (unembed = the input of the unembedding)."""
    with torch.no_grad():
        logits, cache = tl.run_with_cache(tokens)
    return [logits if n == "output" else cache["unembed.hook_in" if n == "unembed" else n] for n in nodes]


def fold(x: torch.Tensor, c: float = 1.0) -> torch.Tensor:
    return torch.cat([x, torch.full_like(x[..., :1], c)], -1)


class Rope64(torch.nn.Module):
    """HF's default rotary table (cos, sin of position · base^(-2k/d), halves repeated) in float64. HF computes it
    (and its RMSNorms) in float32 whatever the model's dtype, and the converted model's tables are float32-rounded,
    which moves float64 hidden states by ~1e-6; both models get exact float64 tables and norms here."""

    def __init__(self, config):
        super().__init__()
        rope = getattr(config, "rope_parameters", None) or {}
        base = float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))
        d = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.inv = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float64) / d)

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = (position_ids[..., None].to(torch.float64) * self.inv).repeat(1, 1, 2)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def rms64(self, x: torch.Tensor) -> torch.Tensor:
    """HF's RMSNorm (weight · x / √(mean(x²) + ε)) in the input's dtype (HF's own upcasts to float32 only)."""
    return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))


@pytest.fixture(scope="module", params=KINDS, ids=IDS)
def pair(request, tmp_path_factory):
    """(kind, HF model float64, the converted TL model float64)."""
    from transformers import AutoModelForCausalLM

    kind, overrides = request.param
    folder = save_random(tmp_path_factory.mktemp(kind) / kind, kind, **overrides)
    hf = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float64).eval()
    hf.model.rotary_emb = Rope64(hf.config)
    for mod in hf.modules():                              # HF's RMSNorm computes in float32 whatever the dtype
        if type(mod).__name__.endswith("RMSNorm"):
            mod.forward = types.MethodType(rms64, mod)
    tl = _as_hooked(str(folder), models.load(str(folder), dtype="float64"))
    for block in tl.blocks:                               # the converted tables are float32-rounded: recompute
        attn = block.attn
        sin, cos = attn.calculate_sin_cos_rotary(tl.cfg.rotary_dim, attn.rotary_cos.shape[0],
                                                 base=attn._rotary_base(), dtype=torch.float64)
        attn.rotary_sin.copy_(sin)
        attn.rotary_cos.copy_(cos)
    if kind != "llama":                                   # Llama folders load converted already
        assert tl.converted_from == type(hf).__name__
    return kind, hf, tl


TOKENS = torch.randint(2, 300, (2, 10), generator=torch.Generator().manual_seed(1))


# ----------------------------------------------------------------------------------- (a) sections == the model
def test_lib_activations_equal_hf_hidden_states_and_logits(pair):
    kind, hf, tl = pair
    L = tl.cfg.n_layers
    nodes = node_layers(L)
    lm = transformer_lib_model(tl, nodes)
    with torch.no_grad():
        out = hf(TOKENS, output_hidden_states=True)
        acts = lm.all_acts(TOKENS)
    hs = out.hidden_states                                # layer inputs, then the final-normed state
    assert out.logits.abs().max() > 1.0                   # not a near-constant random model
    for i in range(L):
        torch.testing.assert_close(acts[nodes.index(f"blocks.{i}.hook_resid_pre")][..., :-1], hs[i],
                                   rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(acts[nodes.index("unembed")][..., :-1], hs[L], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(acts[-1], out.logits, rtol=1e-9, atol=1e-9)
    # composed from the first node layer to the output, starting at HF's embedding
    torch.testing.assert_close(lm.forward_from(0, fold(hs[0])), out.logits, rtol=1e-9, atol=1e-9)
    assert all(torch.all(a[..., -1] == 1) for a in acts[:-1])


def test_each_section_maps_tl_activations_to_the_next(pair):
    kind, hf, tl = pair
    nodes = node_layers(tl.cfg.n_layers)
    lm = transformer_lib_model(tl, nodes)
    want = tl_acts(tl, TOKENS, nodes)
    with torch.no_grad():
        for l, sec in enumerate(lm.sections):
            where = f"{nodes[l]} -> {nodes[l + 1]}"
            torch.testing.assert_close(sec(fold(want[l]))[..., : want[l + 1].shape[-1]], want[l + 1],
                                       rtol=1e-9, atol=1e-9, msg=lambda m, w=where: f"{w}: {m}")
        assert all(getattr(s, "jac_steps", None) is None for s in lm.sections[:-1])  # gated: no closed form


def test_every_bias_enters_with_the_bias_coordinate(pair):
    """All TL biases (b_Q, b_K, b_V, b_O, b_in, b_out, b_U) random: the sections equal TL's activations; and a block's
    section at [x, c=0] is TL's block with every bias zeroed, at [x, 1] the biased block (so each bias is c·b)."""
    import copy

    kind, hf, tl = pair
    tl, tl0 = copy.deepcopy(tl), copy.deepcopy(tl)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for (name, p), p0 in zip(tl.named_parameters(), tl0.parameters()):
            if name.split(".")[-1].lstrip("_").startswith("b_"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
                p0.zero_()
    nodes = node_layers(tl.cfg.n_layers)
    want = tl_acts(tl, TOKENS, nodes)
    with torch.no_grad():
        got = transformer_lib_model(tl, nodes).all_acts(TOKENS)
        for l in range(len(nodes)):
            torch.testing.assert_close(got[l][..., : want[l].shape[-1]], want[l], rtol=1e-9, atol=1e-9)
        L = tl.cfg.n_layers
        cut = [f"blocks.{i}.hook_resid_pre" for i in range(L)] + [f"blocks.{L - 1}.hook_resid_post", "output"]
        lm = transformer_lib_model(tl, cut)
        for i, x in enumerate(tl_acts(tl, TOKENS, cut)[:-1]):
            for model, c in ((tl0, 0.0), (tl, 1.0)):
                ref = model.blocks[i](x) if i < L else model.unembed(model.ln_final(x))
                out = lm.sections[i](fold(x, c))
                torch.testing.assert_close(out[..., : x.shape[-1] if i < L else None], ref, rtol=1e-9, atol=1e-9,
                                           msg=lambda m, w=f"{cut[i]}, c={c}": f"{w}: {m}")
            assert lm.sections[i](torch.zeros_like(fold(x))).abs().max() == 0


# ------------------------------------------------------------------------------------ (b) Jacobians == autograd
@pytest.mark.parametrize("l", [0, 1, 4])
def test_section_jacobian_equals_autograd(pair, l):
    kind, hf, tl = pair
    nodes = node_layers(tl.cfg.n_layers)
    lm = transformer_lib_model(tl, nodes)
    x = fold(tl_acts(tl, TOKENS[:, :5], nodes)[l])
    sec = lm.sections[l]
    alphas, weights = np.array([0.3, 1.0]), np.array([0.25, 0.75])
    J = section_jacobian(sec, x, None, alphas, weights, method="auto")
    for b in range(x.shape[0]):
        want = sum(w * torch.autograd.functional.jacobian(sec, a * x[b: b + 1]) for a, w in zip(alphas, weights))
        n_out = sec(x[:1]).numel()
        torch.testing.assert_close(J[b], want.reshape(n_out, *x.shape[1:]), rtol=1e-9, atol=1e-10)
    C = torch.randn(sec(x[:1]).shape[-1], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    JC = section_jacobian(sec, x, C, alphas[1:], weights[1:] * 0 + 1, method="auto")  # rotated output, α = 1
    want = torch.autograd.functional.jacobian(lambda z: sec(z) @ C, x[:1])
    torch.testing.assert_close(JC[0], want.reshape(-1, *x.shape[1:]), rtol=1e-9, atol=1e-10)


def test_lib_build_auto_equals_the_reference_loop(pair):
    """lib_build's default Jacobians (torch.func: these sections have no closed form) give the Λ and the edges of
    rib's one-backward-per-output loop."""
    from analyses.lib.basis import lib_build

    kind, hf, tl = pair
    if kind not in ("qwen3", "mistral"):
        pytest.skip("one GQA model with q/k norms and one with a sliding window are enough")
    lm = transformer_lib_model(tl, ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_mid", "blocks.1.hook_resid_pre"])
    x = TOKENS[:, :4]
    auto, e_auto = lib_build(lm, x, method="auto")
    loop, e_loop = lib_build(lm, x, method="loop")
    for a, b in zip(auto[:-1], loop[:-1]):
        torch.testing.assert_close(a.Lam, b.Lam, rtol=1e-8, atol=1e-10)
    for a, b in zip(e_auto, e_loop):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)


# ------------------------------------------------------------------------------------------- (c) end to end
def test_run_on_a_native_qwen3_folder_says_converted(tmp_path):
    folder = save_random(tmp_path / "qwen3", "qwen3")
    res = run(Config(model=str(folder)))                 # LM defaults: 8 blocks of 8 tokens; about 10 s
    assert res.summary["converted_from"] == "Qwen3ForCausalLM"
    prov = res.provenance
    assert prov["converted_from"] == "Qwen3ForCausalLM" and "converted from Qwen3ForCausalLM" in prov["weights"]
    assert prov["model"] == str(folder)
    assert len(res.findings) == 3 and res.details["node_layers"][-1] == "output"
    assert res.summary["lib_edges_required_total"] > 0 and 0 <= res.summary["test_accuracy"] <= 1
    assert res.summary["n_graph_samples"] == 8 and "lib_minus_pca_edges" in res.summary
    assert set(res.details["lib_dims"]) == {"blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre", "unembed",
                                             "output"}


def test_unconvertible_native_model_is_refused_in_one_line(tmp_path):
    folder = save_tiny_native(tmp_path / "g2", "gemma2")
    with pytest.raises(ConfigError) as err:
        run(Config(model=str(folder), lm_ctx=4, lm_blocks=2))
    msg = str(err.value.message)
    assert "transformer-lens" in msg and "Gemma2ForCausalLM" in msg and "\n" not in msg
    assert "Qwen3" in err.value.hint
