"""interp.intervene against hand-written hook edits: the same activations written by a manual hook give the same
logits; loss and KL against a float64 computation from the logits; the same on a natively run HF model."""

from __future__ import annotations

import pytest
import torch

from interp.errors import ConfigError
from interp.intervene import Edit, intervene, next_token_stats

HOOK = "blocks.1.hook_resid_post"


def _sae(d_in: int, d_sae: int = 48, k: int = 4, seed: int = 0, hook: str = HOOK):
    from sae_lens import TopKSAE, TopKSAEConfig

    torch.manual_seed(seed)
    cfg = TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k)
    cfg.metadata.hook_name = hook
    sae = TopKSAE(cfg)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return sae.eval()


def _manual(sae, x: torch.Tensor, latents, mode: str, value: float, keep_error: bool) -> torch.Tensor:
    """The edit by hand from the SAE's weights: TopK encode, edit, decode (+ the error)."""
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    top = pre.topk(sae.cfg.k, dim=-1)
    f = torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
    g = f.clone()
    for i in latents:
        g[..., i] = 0.0 if mode == "ablate" else (value if mode == "clamp" else g[..., i] * value)
    out = g @ sae.W_dec + sae.b_dec
    return out + (x - (f @ sae.W_dec + sae.b_dec)) if keep_error else out


@pytest.mark.parametrize("mode,value,keep_error", [("ablate", 0.0, True), ("clamp", 3.0, False),
                                                    ("scale", 2.5, True)])
def test_sae_edits_equal_a_manual_hook(tiny_model, tokens, mode, value, keep_error):
    sae = _sae(tiny_model.cfg.d_model)
    with torch.no_grad():
        x = tiny_model.run_with_cache(tokens, names_filter=HOOK)[1][HOOK]
        pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    latents = pre.topk(sae.cfg.k, -1).indices[0, 3, :2].tolist()  # latents that fire at some position
    with torch.no_grad():
        manual = tiny_model.run_with_hooks(tokens, fwd_hooks=[(HOOK, lambda a, hook: _manual(
            sae, a, latents, mode, value, keep_error))])
    with intervene(tiny_model, sae=sae, edits=[Edit(latents, mode, value)], keep_error=keep_error) as iv:
        out = iv.run(tokens, capture=["blocks.1.hook_resid_post", "ln_final.hook_normalized"])
    torch.testing.assert_close(out.logits, manual, rtol=1e-4, atol=1e-4)
    assert set(out.captures) == {"blocks.1.hook_resid_post", "ln_final.hook_normalized"}
    torch.testing.assert_close(out.captures[HOOK], _manual(sae, x, latents, mode, value, keep_error),
                               rtol=1e-4, atol=1e-4)
    # loss and KL from the logits in float64, by hand
    lp, lc = torch.log_softmax(manual.double(), -1), torch.log_softmax(tiny_model(tokens).double(), -1)
    tgt = tokens[:, 1:, None]
    assert out.loss == pytest.approx(float(-lp[:, :-1].gather(-1, tgt).mean()), rel=1e-4)
    assert out.clean_loss == pytest.approx(float(-lc[:, :-1].gather(-1, tgt).mean()), rel=1e-6)
    assert out.kl == pytest.approx(float((lc.exp() * (lc - lp))[:, :-1].sum(-1).mean()), rel=1e-3, abs=1e-7)
    assert out.delta_loss == pytest.approx(out.loss - out.clean_loss)


def test_edits_with_the_error_kept_and_no_edit_change_nothing(tiny_model, tokens):
    sae = _sae(tiny_model.cfg.d_model)
    with intervene(tiny_model, sae=sae, keep_error=True) as iv:
        out = iv.run(tokens)
    torch.testing.assert_close(out.logits, out.clean_logits, rtol=1e-4, atol=1e-4)
    assert abs(out.kl) < 1e-6


def test_steering_vector_at_some_positions(tiny_model, tokens):
    vec = torch.randn(tiny_model.cfg.d_model)

    def manual(a, hook):
        a = a.clone()
        a[:, [2, 5]] += vec
        return a

    with torch.no_grad():
        want = tiny_model.run_with_hooks(tokens, fwd_hooks=[(HOOK, manual)])
    with intervene(tiny_model, steer=vec, steer_hook=HOOK, steer_positions=[2, 5]) as iv:
        out = iv.run(tokens)
    torch.testing.assert_close(out.logits, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.logits[:, :2], out.clean_logits[:, :2], rtol=1e-5, atol=1e-5)  # causal


def test_native_hf_model_edit_equals_a_manual_module_hook(tmp_path):
    """A natively run Qwen2: the canonical alias resolves to the decoder layer's output tuple, edited in place."""
    from tiny_hf import save_tiny_native

    from interp.models import load

    model = load(save_tiny_native(tmp_path / "qwen2", "qwen2"))
    tokens = torch.randint(3, 50, (2, 9), generator=torch.Generator().manual_seed(0))
    sae = _sae(model.cfg.d_model, hook="blocks.0.hook_resid_post")
    layer = model.hf.model.layers[0]

    def manual(module, args, out):
        hidden = out[0] if isinstance(out, tuple) else out
        new = _manual(sae, hidden, [1, 2], "clamp", 2.0, True)
        return (new, *out[1:]) if isinstance(out, tuple) else new

    with torch.no_grad():
        handle = layer.register_forward_hook(manual)
        try:
            want = model(tokens).logits
        finally:
            handle.remove()
    with intervene(model, sae=sae, edits=[Edit([1, 2], "clamp", 2.0)], keep_error=True) as iv:
        out = iv.run(tokens)
    torch.testing.assert_close(out.logits, want, rtol=1e-4, atol=1e-4)
    assert out.kl > 0


def test_bad_interventions_are_one_line_errors(tiny_model, tokens):
    sae = _sae(tiny_model.cfg.d_model)
    with pytest.raises(ConfigError, match="not in the SAE"):
        with intervene(tiny_model, sae=sae, edits=[Edit([10_000])]) as iv:
            iv.run(tokens)
    with pytest.raises(ConfigError, match="need an SAE"):
        with intervene(tiny_model, edits=[Edit([1])]):
            pass
    with pytest.raises(ConfigError, match="width"):
        with intervene(tiny_model, sae=_sae(7), hook=HOOK) as iv:
            iv.run(tokens)


def test_next_token_stats_ignore_padding():
    logits = torch.randn(2, 5, 11, generator=torch.Generator().manual_seed(0))
    tokens = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    loss, clean, kl = next_token_stats(logits, logits, tokens, mask)
    lp = torch.log_softmax(logits.double(), -1)
    pairs = [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (1, 3)]
    want = -sum(float(lp[b, p, tokens[b, p + 1]]) for b, p in pairs) / len(pairs)
    assert loss == pytest.approx(want) and clean == pytest.approx(want) and kl == pytest.approx(0.0, abs=1e-12)
