"""obsprop on modern decoders (RMSNorm, grouped-query attention, gated MLPs), run natively by interp and converted to
transformer-lens for the weight-based pullbacks.

(a) a converted model's logits equal the Hugging Face model's (float32, tiny configs with every weight randomised)
    for each architecture interp converts; the others are refused in one line;
(b) the feature vector of a path through RMSNorm, one head's OV circuit (a GQA head) and a gated MLP (point mode)
    equals the autograd gradient of the observable along that path, computed by hand on the HF modules, float64,
    with the norm scales frozen ("frozen") and with the real norms ("exact");
(c) the whole pipeline runs on a tiny Qwen3 folder given by path, and says the model was converted.
"""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("transformer_lens")
from tiny_hf import save_tiny_native, tiny_config  # noqa: E402

from helpers import tiny_tokenizer  # noqa: E402
from interp import models  # noqa: E402
from interp.errors import ConfigError, ModelNotFoundError  # noqa: E402

torch.set_num_threads(1)


def randomised(config, seed: int = 0):
    """A causal LM of `config` with every weight drawn large enough that attention, gating and norms matter
    (norm gains 1 + 0.3·N(0,1), other weights and biases N(0, 0.3²))."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    hf = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.3 * torch.randn_like(p))
            else:
                p.normal_(0, 0.3)
    return hf


def save_random(path, kind: str, tokenizer=None, **overrides):
    """A folder with a randomised tiny `kind` model (config fields overridden) and a tokenizer."""
    cfg = tiny_config(kind)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    randomised(cfg).save_pretrained(path, safe_serialization=True)
    (tokenizer or tiny_tokenizer()).save_pretrained(path)
    return path


# ------------------------------------------------------------------------------------------ (a) conversion
CONVERTED = [("mistral", {}), ("mistral", {"sliding_window": 6}), ("qwen2", {}), ("qwen3", {}),
             ("qwen3", {"tie_word_embeddings": True}), ("phi3", {}), ("phi3", {"sliding_window": 6}), ("llama", {})]


@pytest.mark.parametrize("kind,overrides", CONVERTED, ids=[f"{k}-{'-'.join(o) or 'plain'}" for k, o in CONVERTED])
def test_converted_logits_equal_hf_logits(tmp_path, kind, overrides):
    from transformers import AutoModelForCausalLM

    folder = save_random(tmp_path / kind, kind, **overrides)
    hf = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    tl = models.load(str(folder), backend="transformer_lens")
    assert models.is_transformer(tl)
    tokens = torch.randint(2, 300, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = hf(tokens).logits, tl(tokens)
    assert want.abs().max() > 1.0                          # not a near-constant random model
    torch.testing.assert_close(got, want, rtol=1e-5, atol=5e-5)
    if kind != "llama":                                    # Llama folders load converted anyway
        assert tl.converted_from == type(hf).__name__
        native = models.load(str(folder))
        assert type(native).__name__ == "NativeModel"
        again = models.as_transformer_lens(native)         # converting the in-memory model gives the same
        with torch.no_grad():
            torch.testing.assert_close(again(tokens), want, rtol=1e-5, atol=5e-5)


@pytest.mark.parametrize("kind,overrides,why", [
    ("gemma2", {}, "hub names only"), ("olmo2", {}, "hub names only"),
    ("qwen2", {"use_sliding_window": True, "sliding_window": 6}, "sliding-window"),
])
def test_unconvertible_models_are_refused_in_one_line(tmp_path, kind, overrides, why):
    folder = save_tiny_native(tmp_path / kind, kind)
    if overrides:
        save_random(folder, kind, **overrides)
    with pytest.raises(ModelNotFoundError) as err:
        models.load(str(folder), backend="transformer_lens")
    msg = str(err.value)
    assert "cannot be converted to transformer-lens" in msg and why in msg and "\n" not in msg
    assert "Qwen3" in err.value.hint


def test_obsprop_refuses_an_unconvertible_native_model_in_one_line(tmp_path, capsys):
    from apps.cli import main

    folder = save_tiny_native(tmp_path / "g2", "gemma2")
    assert main(["analyze", "obsprop", "--model", str(folder), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "transformer-lens" in err and "Gemma2ForCausalLM" in err
    assert not (tmp_path / "out" / "result.json").exists()


# ------------------------------------------------------------------------------ (b) feature vector == autograd
@pytest.fixture(scope="module")
def qwen3_pair(tmp_path_factory):
    """A randomised tiny Qwen3 (4 query heads, 2 key/value heads, gated MLP, RMSNorm) as an HF model and converted,
    both in float64."""
    from transformers import AutoModelForCausalLM

    folder = save_random(tmp_path_factory.mktemp("q3") / "qwen3", "qwen3")
    hf = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float64).eval()
    return hf, models.load(str(folder), backend="transformer_lens", dtype="float64")


def _hf_references(hf, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """Residual streams [T, d] of an HF forward pass, by hand: layer 0's input, layer 1's input to its MLP norm
    (resid_mid) and the final norm's input."""
    base, grabbed = hf.model, {}

    def keep(name):
        return lambda module, args: grabbed.__setitem__(name, args[0][0].detach())

    handles = [base.layers[0].register_forward_pre_hook(keep("pre0")),
               base.layers[1].post_attention_layernorm.register_forward_pre_hook(keep("mid1")),
               base.norm.register_forward_pre_hook(keep("final"))]
    with torch.no_grad():
        hf(tokens)
    for h in handles:
        h.remove()
    return grabbed


def _path_function(hf, n: torch.Tensor, head: int, refs: dict, frozen: bool):
    """x (the head's source residual) -> the observable's change sent only along attn0.head -> mlp1 -> logits, with
    the head's attention weight on x set to 1, written with the HF modules and weights. Each RMSNorm is
    w ⊙ x / s with s = sqrt(mean(x²) + eps) at x itself, or held at its reference input (frozen). (Written out
    rather than called: HF's Qwen3RMSNorm computes in float32 even for float64 inputs.)"""
    cfg, base = hf.config, hf.model
    d_head, rep = cfg.head_dim, cfg.num_attention_heads // cfg.num_key_value_heads
    kv = head // rep                                      # HF repeat_kv: key/value head j serves heads j*rep ...
    attn, mlp = base.layers[0].self_attn, base.layers[1].mlp

    def norm(module, x, x_ref):
        s = ((x_ref if frozen else x).pow(2).mean(-1) + module.variance_epsilon).sqrt()
        return module.weight * x / s

    x_ref, r_mid, r_f = refs["x"], refs["mid"], refs["final"]

    def head_out(x):
        v = attn.v_proj(norm(base.layers[0].input_layernorm, x, x_ref))[kv * d_head:(kv + 1) * d_head]
        return attn.o_proj.weight[:, head * d_head:(head + 1) * d_head] @ v

    def mlp_out(r):
        return mlp(norm(base.layers[1].post_attention_layernorm, r, r_mid))

    def f(x):
        delta_mlp = mlp_out(r_mid + head_out(x) - head_out(x_ref)) - mlp_out(r_mid)
        return hf.lm_head(norm(base.norm, r_f + delta_mlp, r_f)) @ n

    return f


@pytest.mark.parametrize("mode", ["frozen", "exact"])
@pytest.mark.parametrize("head", [1, 2])                  # key/value heads 0 and 1 (h // 2), not h % 2
def test_path_feature_vector_is_the_hand_gradient_on_the_hf_model(qwen3_pair, mode, head):
    from analyses.obsprop.method import feature_vector

    hf, tl = qwen3_pair
    tokens = torch.randint(2, 300, (1, 12), generator=torch.Generator().manual_seed(3))
    grabbed = _hf_references(hf, tokens)
    src, q = 4, 11                                       # the head's source token; the observable's position
    refs = {"x": grabbed["pre0"][src], "mid": grabbed["mid1"][q], "final": grabbed["final"][q]}
    n = torch.randn(hf.config.vocab_size, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x = refs["x"].clone().requires_grad_(True)
    (want,) = torch.autograd.grad(_path_function(hf, n, head, refs, frozen=mode == "frozen")(x), x)
    tl_refs = {"blocks.1.hook_resid_mid": refs["mid"], "blocks.1.hook_resid_post": refs["final"]}
    y, info = feature_vector(tl, n, [f"attn0.{head}", "mlp1"], tl_refs, ln=mode, mlp="point",
                             node_refs={f"attn0.{head}": refs["x"]})
    assert info["mlp1"]["mode"] == "point" and want.norm() > 1e-3
    torch.testing.assert_close(y, want, rtol=1e-10, atol=1e-12 * float(want.norm()))


def test_rms_pieces_and_gated_linear_refusal(qwen3_pair):
    """RMSNorm: frozen == approx('scale'); the exact pullback equals autograd through the TL module; the mean
    reference keeps the mean's direction at the rows' mean RMS scale; 'linear' is refused for a gated MLP."""
    from analyses.obsprop.method import feature_vector, mean_scale_ref
    from analyses.obsprop.observables import pullback_layernorm

    _, tl = qwen3_pair
    g = torch.Generator().manual_seed(5)
    ln, d = tl.blocks[1].ln1, tl.cfg.d_model
    x, y = torch.randn(d, generator=g, dtype=torch.float64) * 3, torch.randn(d, generator=g, dtype=torch.float64)
    torch.testing.assert_close(pullback_layernorm(ln, y, x, "frozen"), pullback_layernorm(ln, y, x, "approx"))
    xx = x.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(ln(xx.view(1, 1, -1)).view(-1) @ y, xx)
    torch.testing.assert_close(pullback_layernorm(ln, y, x, "exact"), auto, rtol=1e-12, atol=1e-14)
    rows = torch.randn(16, d, generator=g, dtype=torch.float64) + 2.0
    m = mean_scale_ref(rows, tl.cfg.eps, centred=False)
    rms = (rows.pow(2).mean(-1) + tl.cfg.eps).sqrt().mean()
    assert abs(float((m.pow(2).mean() + tl.cfg.eps).sqrt() - rms)) < 1e-12
    assert float(torch.nn.functional.cosine_similarity(m, rows.mean(0), dim=0)) > 1 - 1e-12
    refs = {"blocks.1.hook_resid_mid": x, "blocks.1.hook_resid_post": x}
    with pytest.raises(ConfigError, match="gated"):
        feature_vector(tl, torch.ones(tl.cfg.d_vocab, dtype=torch.float64), ["mlp1"], refs, mlp="linear")


# -------------------------------------------------------------------------------------- (c) the whole pipeline
def _corpus_ok() -> bool:
    try:
        from analyses.obsprop.prompts import corpus_dir

        corpus_dir()
        models.load_tokenizer()
        return True
    except Exception:
        return False


@pytest.mark.skipif(not _corpus_ok(), reason="embedded corpus / tokenizer not present")
def test_pipeline_on_a_tiny_qwen3_folder(tmp_path):
    """run() with cfg.model a Qwen3 folder (embedded tokenizer, so the observables are single tokens): converted,
    every study runs, the exact self-checks hold on the converted model, provenance says it was converted."""
    import transformers as tf

    from analyses.obsprop import Config, ObsPropResult, run

    tok = models.load_tokenizer()
    cfg = tf.Qwen3Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
                         tie_word_embeddings=False, bos_token_id=0, eos_token_id=0)
    folder = tmp_path / "tiny-qwen3"
    randomised(cfg).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    res = run(Config(model=str(folder), score_tokens=4096, n_pairs=8, n_repeats=2, path_depth=2, beam=2, n_train=10,
                     mlp_mode="point"))
    s = res.summary
    assert s["converted_from"] == "Qwen3ForCausalLM"
    assert "converted from Qwen3ForCausalLM" in res.provenance["weights"]
    for key in ("cos_raw_subj_obj", "gender_cos_obsprop", "coupling_top", "slope_top", "ln_cos_approx_exact_mean"):
        assert isinstance(s[key], float) and math.isfinite(s[key]), key
    assert s["first_order_max_rel_err"] < 1e-10 and s["ov_identity_max_rel_err"] < 1e-10 and s["dla_rel_err"] < 1e-10
    assert s["ln_approx_perp_rel_err_max"] < 1e-10          # approx == exact off the direction of x (RMSNorm)
    assert res.details["selfcheck"]["linear_mlp"] == {"skipped": "gated MLP (no linear MLP mode)"}
    assert len(res.findings) == 4 and {f.verdict for f in res.findings} <= {"held", "did not hold"}
    back = ObsPropResult.load(res.save(tmp_path / "res"))
    assert back.provenance["weights"] == res.provenance["weights"]
    with pytest.raises(ConfigError, match="gated"):
        run(Config(model=str(folder), mlp_mode="linear", score_tokens=512, ctx=64, n_pairs=4))
