"""Per-layer statistics and detection: the spec's synthetic tensor, brute-force medians, planted massive dims."""

import numpy as np
import pytest
import torch

from analyses.massive.method import (
    DetectionCriteria,
    aggregate_ratio,
    detect_massive,
    is_massive,
    layer_outputs,
    massive_stats,
    median_abs,
)
from interp.errors import ConfigError


def test_massive_synthetic_tensor_spec_check():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(2048, 512, generator=g, dtype=torch.float64)
    h[0, 7], h[5, 300] = 1000.0, -600.0
    st = massive_stats(h)
    assert st["top"][0] == pytest.approx(1000.0) and st["top"][1] == pytest.approx(600.0)
    assert (st["top_pos"][0], st["top_dim"][0]) == (0, 7) and (st["top_pos"][1], st["top_dim"][1]) == (5, 300)
    assert st["top_value"][1] == pytest.approx(-600.0)
    assert st["median"] == pytest.approx(0.6745, abs=0.01)  # median of |N(0,1)| = Φ⁻¹(3/4)
    assert st["ratio"] == pytest.approx(1483, rel=0.02)
    assert is_massive(1000.0, h) and not is_massive(99.0, h)
    assert not is_massive(99.0, median=0.05)  # ratio 1980 > 1000 but |a| ≤ 100


def test_massive_median_matches_numpy_and_aggregates_brute_force():
    x = torch.randn(3, 7, 10, dtype=torch.float64)  # even count 70
    np.testing.assert_allclose(median_abs(x).numpy(), np.median(np.abs(x.numpy()).reshape(3, -1), axis=1))
    x = torch.randn(3, 7, 9, dtype=torch.float64)  # odd count 63
    np.testing.assert_allclose(median_abs(x).numpy(), np.median(np.abs(x.numpy()).reshape(3, -1), axis=1))
    from analyses.massive.method import _candidates

    h = torch.randn(2, 4, 6, dtype=torch.float64)  # even S·d = 24: numpy's median averages the middle pair
    h[1, 2, 3] = 40.0
    c = _candidates(h, DetectionCriteria(mode="relative", candidates=1))
    flat = h.numpy().reshape(2, -1)
    med = np.median(flat, axis=1, keepdims=True)
    mad = np.median(np.abs(flat - med), axis=1, keepdims=True)
    top = np.take_along_axis(flat, np.abs(flat).argmax(1)[:, None], 1)
    np.testing.assert_allclose(c["mad_score"].numpy(), np.abs(top - med) / mad, rtol=1e-12)
    top1, med = np.array([[10.0, 30.0]]), np.array([[1.0, 2.0]])
    agg = aggregate_ratio(top1, med)
    assert agg["ratio_of_means"][0] == pytest.approx(20 / 1.5)
    assert agg["mean_of_ratios"][0] == pytest.approx((10 + 15) / 2)


def _planted(value: float, L: int = 4, B: int = 3, S: int = 64, d: int = 128, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hs = torch.randn(L, B, S, d, generator=g, dtype=torch.float64)
    for li in range(1, L):  # dim 17 at position 0 from layer 1 on; dim 5 at position 9 in layer 2 only
        hs[li, :, 0, 17] = value
    hs[2, :, 9, 5] = -value
    return hs


def test_massive_detection_finds_planted_dims_sun_and_relative():
    hs = _planted(2000.0)
    tokens = torch.arange(3 * 64).view(3, 64)
    sun = detect_massive(hs, tokens, criteria=DetectionCriteria(mode="sun"))
    got = {(r["layer"], r["input"], r["position"], r["dim"]) for r in sun["rows"]}
    want = {(li, b, 0, 17) for li in (1, 2, 3) for b in range(3)} | {(2, b, 9, 5) for b in range(3)}
    assert got == want and sun["dims"] == [5, 17]
    assert all(r["token_id"] == int(tokens[r["input"], r["position"]]) for r in sun["rows"])
    # relative criteria: dim 5 (one layer of four) fails the 25%-of-layers persistence only when asked for 50%
    rel = detect_massive(hs, tokens, criteria=DetectionCriteria(mode="relative", persistence=0.5))
    assert rel["dims"] == [17] and rel["dims_by_layer"] == {1: [17], 2: [17], 3: [17]}


def test_massive_detection_small_model_values_relative_only():
    hs = _planted(60.0)  # ratio ≈ 90 like Pythia-14M: Sun's |a| > 100 never fires
    assert detect_massive(hs, criteria=DetectionCriteria(mode="sun"))["rows"] == []
    assert detect_massive(hs, criteria=DetectionCriteria(mode="relative"))["dims"] == [5, 17]
    noise = torch.randn(4, 3, 64, 128, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert detect_massive(noise)["rows"] == []  # Gaussian states: max/median ≈ 7, nothing flagged
    with pytest.raises(ConfigError):
        detect_massive(hs[0])


def test_massive_layer_outputs_match_run_with_cache(tiny_model):
    tokens = torch.randint(0, tiny_model.cfg.d_vocab, (2, 16), generator=torch.Generator().manual_seed(0))
    hs = layer_outputs(tiny_model, tokens)
    _, cache = tiny_model.run_with_cache(tokens)
    assert hs.shape == (2, 2, 16, 32) and hs.dtype == torch.float64
    for li in range(2):
        torch.testing.assert_close(hs[li], cache[f"blocks.{li}.hook_resid_post"].double())


@pytest.fixture
def tiny_model():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, d_vocab=50, n_ctx=32,
                                  act_fn="gelu", normalization_type="LN", seed=0, device="cpu")
    return HookedTransformer(cfg).eval()


def test_massive_string_prompts_padding_does_not_change_detection():
    """Right-padded string prompts give each prompt's rows and dims exactly as when it runs alone."""
    from pathlib import Path

    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import PreTrainedTokenizerFast

    from analyses.massive.method import detect_massive_dims

    tok_dir = Path(__file__).resolve().parents[2] / "data" / "tokenizer"
    if not (tok_dir / "tokenizer.json").is_file():
        pytest.skip("embedded tokenizer not present")
    tok = PreTrainedTokenizerFast.from_pretrained(str(tok_dir))
    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=2, d_head=16, d_mlp=64, d_vocab=len(tok), n_ctx=64,
                                  act_fn="gelu", normalization_type="LN", seed=0, device="cpu",
                                  default_prepend_bos=False)
    model = HookedTransformer(cfg, tokenizer=tok).eval()
    prompts = ["x = 1", "def f(x):\n    return x * 3 + 1  # a longer prompt that the short one is padded to"]
    loose = DetectionCriteria(mode="relative", rel_ratio=2.0, mad_thresh=2.0, max_cluster=16, persistence=0.0)
    alone = [model.to_tokens(p, prepend_bos=False) for p in prompts]
    assert alone[0].shape[1] < alone[1].shape[1] // 3  # the short prompt is mostly padding in the batch
    # the dims of the padded batch are the union of each prompt's own (rows do not couple at persistence 0)
    union = sorted(set().union(*[detect_massive_dims(model, [p], criteria=loose) for p in prompts]))
    assert detect_massive_dims(model, prompts, criteria=loose) == union
    batch = model.to_tokens(prompts, prepend_bos=False, padding_side="right")
    det = detect_massive(layer_outputs(model, batch), batch, criteria=loose, lengths=[t.shape[1] for t in alone])
    for b, t in enumerate(alone):
        one = detect_massive(layer_outputs(model, t), t, criteria=loose)
        mine = [r for r in det["rows"] if r["input"] == b]
        assert len(mine) == len(one["rows"]) > 0
        for r, s in zip(mine, one["rows"]):
            assert (r["layer"], r["position"], r["dim"], r["token_id"]) == (s["layer"], s["position"], s["dim"],
                                                                            s["token_id"])
            assert r["ratio"] == pytest.approx(s["ratio"], rel=1e-5)
            assert r["mad_score"] == pytest.approx(s["mad_score"], rel=1e-5)
    with pytest.raises(ConfigError):
        detect_massive(layer_outputs(model, batch), lengths=[0, 3])


def test_train_suite_layer_ratios_use_numpy_median():
    """train_suite's per-layer ratio: mean over inputs of max |h| and of numpy's median |h| (even S·d count)."""
    from transformers import GPTNeoXForCausalLM

    from apps.build.massive_suite import layer_ratios, neox_config

    torch.manual_seed(0)
    arch = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    model = GPTNeoXForCausalLM(neox_config(arch, 50, 16)).eval()
    tokens = torch.randint(0, 50, (3, 16), generator=torch.Generator().manual_seed(1))
    outs = []
    hooks = [layer.register_forward_hook(lambda m, i, o: outs.append(o[0] if isinstance(o, tuple) else o))
             for layer in model.gpt_neox.layers]
    got = layer_ratios(model, tokens)
    for h in hooks:
        h.remove()
    for li, h in enumerate(outs[:2]):
        a = np.abs(h.detach().double().numpy()).reshape(3, -1)  # 16·32 entries per input: numpy averages the middle two
        assert got["median"][li] == pytest.approx(np.median(a, axis=1).mean(), rel=1e-12)
        assert got["ratio_of_means"][li] == pytest.approx(a.max(1).mean() / np.median(a, axis=1).mean(), rel=1e-12)
