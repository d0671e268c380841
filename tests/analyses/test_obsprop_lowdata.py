"""Spec check 5: a direction u planted through a head's OV circuit is recovered zero-shot by ObsProp (cos > 0.95),
while a 30+30 linear probe on the same layer's activations (d = 128) is clearly worse."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformer_lens")
from transformer_lens import HookedTransformer, HookedTransformerConfig  # noqa: E402

from analyses.obsprop.method import cosine, feature_vector, refs_from_cache  # noqa: E402
from analyses.obsprop.observables import observable, pullback_unembed  # noqa: E402
from analyses.obsprop.patching import run_cache  # noqa: E402
from analyses.obsprop.scores import linear_probe, mean_difference, separation  # noqa: E402

torch.set_num_threads(1)


def test_obsprop_recovers_planted_ov_direction_better_than_probe():
    d, V = 128, 120
    cfg = HookedTransformerConfig(n_layers=2, d_model=d, n_heads=4, d_head=32, d_vocab=V, n_ctx=16, act_fn="gelu",
                                  normalization_type="LN", positional_embedding_type="rotary", rotary_dim=8,
                                  attn_only=True, seed=0, device="cpu", dtype=torch.float64)
    model = HookedTransformer(cfg).eval()
    g = torch.Generator().manual_seed(0)
    u = torch.randn(d, generator=g, dtype=torch.float64)
    u -= u.mean()
    u /= u.norm()
    fem, mal = list(range(10, 30)), list(range(30, 50))
    n = observable(model, [0], [1])
    with torch.no_grad():
        scales = torch.logspace(-1, 0.7, d, dtype=torch.float64)
        Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
        model.W_E.copy_(torch.randn(V, d, generator=g, dtype=torch.float64) * scales @ Q.T / 2)
        model.W_E[fem] += 0.6 * u
        model.W_E[mal] -= 0.6 * u
        attn = model.blocks[1].attn            # head (1,0): reads u, writes along W_U n
        w = model.blocks[1].ln1.w
        attn.W_V[0].zero_()
        attn.W_V[0, :, 0] = 3.0 * u / w
        attn.W_O[0].zero_()
        z = pullback_unembed(model, n)
        attn.W_O[0, 0] = z / z.norm()
    # contexts: random filler tokens with one name somewhere; activations at resid_pre_1 on the name token
    toks = torch.randint(50, V, (400, 12), generator=g)
    name_pos = torch.randint(0, 11, (400,), generator=g)
    names = torch.tensor(fem + mal)[torch.randint(0, 40, (400,), generator=g)]
    toks[torch.arange(400), name_pos] = names
    _, cache = run_cache(model, toks)
    x = cache["blocks.1.hook_resid_pre"][torch.arange(400), name_pos]
    is_f = names < 30
    refs = refs_from_cache(model, cache)
    y, _ = feature_vector(model, n, ["attn1.0"], refs, ln="approx", node_refs={"attn1.0": x.mean(0)})
    assert cosine(y, u) > 0.95
    xf, xm = x[is_f], x[~is_f]
    cos_probe = []
    for r in range(10):
        pf = torch.randperm(len(xf), generator=torch.Generator().manual_seed(r))[:30]
        pm = torch.randperm(len(xm), generator=torch.Generator().manual_seed(100 + r))[:30]
        cos_probe.append(cosine(linear_probe(xf[pf], xm[pm]), u))
    mean_probe = sum(cos_probe) / len(cos_probe)
    assert mean_probe < cosine(y, u) - 0.2, mean_probe
    # reference numbers: mean-difference r² on all rows, and how well y separates the classes
    assert separation(y, xf, xm)["auc"] > 0.6
    print(f"cos(obsprop,u)={cosine(y, u):.4f} cos(probe30,u)={mean_probe:.4f}")
    assert 0 <= separation(mean_difference(xf, xm), xf, xm)["r2"] <= 1
