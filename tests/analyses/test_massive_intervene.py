"""Zero/mean interventions on a planted massive dim: loss matches a manual recomputation; mean ≪ zero damage."""

import pytest
import torch

from analyses.massive.intervene import intervene_massive
from analyses.massive.method import DetectionCriteria, detect_massive, layer_outputs
from interp.errors import ConfigError


@pytest.fixture(scope="module")
def planted():
    """Random 3-layer model whose layer-0 MLP writes +300 into dim 5 at every position (a constant massive dim)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=3, d_model=64, n_heads=4, d_head=16, d_mlp=128, d_vocab=40, n_ctx=32,
                                  act_fn="gelu", normalization_type="LN", seed=3, device="cpu")
    m = HookedTransformer(cfg).eval()
    with torch.no_grad():
        m.blocks[0].mlp.b_out[5] = 300.0
        m.unembed.W_U[:] *= 20  # make the logits sensitive to the residual so the loss moves
    tokens = torch.randint(0, 40, (4, 32), generator=torch.Generator().manual_seed(0))
    return m, tokens


def _manual_loss(model, tokens, fill):
    """Loss with the last layer's output dim 5 replaced by `fill`, recomputed by hand (ln_final + unembed)."""
    _, cache = model.run_with_cache(tokens)
    h = cache["blocks.2.hook_resid_post"].clone()
    h[..., 5] = fill
    with torch.no_grad():
        logits = model.unembed(model.ln_final(h))
    lp = torch.log_softmax(logits[:, :-1], -1)
    return float(-lp.gather(-1, tokens[:, 1:, None]).mean())


def test_massive_planted_dim_is_detected(planted):
    m, tokens = planted
    det = detect_massive(layer_outputs(m, tokens), tokens, criteria=DetectionCriteria(mode="relative"))
    assert det["dims"] == [5] and sorted(det["dims_by_layer"]) == [0, 1, 2]


def test_massive_intervention_matches_manual_loss(planted):
    m, tokens = planted
    z = intervene_massive(m, tokens, 2, [5], mode="zero", positions="all")
    assert z["loss_intervened"] == pytest.approx(_manual_loss(m, tokens, 0.0), rel=1e-5)
    assert z["n_entries"] == 4 * 32
    mean = intervene_massive(m, tokens, 2, [5], mode="mean", positions="all")
    h = layer_outputs(m, tokens)[2, ..., 5]
    assert mean["fill"][0] == pytest.approx(float(h.mean()), rel=1e-9)
    assert mean["loss_intervened"] == pytest.approx(_manual_loss(m, tokens, float(h.mean())), rel=1e-5)
    # Sun et al.: setting a (near-constant) massive activation to its mean barely matters, zeroing it does
    assert abs(mean["delta_loss"]) < 0.1 * abs(z["delta_loss"])
    assert z["delta_loss"] > 0.5 and abs(z["delta_loss_control"]) < 0.2 * z["delta_loss"]


def test_massive_intervention_bad_input(planted):
    m, tokens = planted
    with pytest.raises(ConfigError):
        intervene_massive(m, tokens, 7, [5])
    with pytest.raises(ConfigError):
        intervene_massive(m, tokens, 0, [5], mode="half")
