"""SAE evals against independent computations: the streaming sums against numpy on all rows at once, and the
loss-recovered numbers against a hand-written splice loop (transformer-lens run_with_hooks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analyses.sae_evals import Config, SAEEvalsResult, run
from analyses.sae_evals.method import ReconSums, density_histogram, kl_recovered, loss_recovered
from interp.models import DEFAULT_MODEL, embedded_names

needs_model = pytest.mark.skipif(DEFAULT_MODEL not in embedded_names(), reason="the embedded default is not in data/")


def test_streaming_sums_equal_numpy_on_all_rows():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 6, generator=g) * 3 + 1
    rec = x + 0.4 * torch.randn(300, 6, generator=g)
    f = torch.relu(torch.randn(300, 10, generator=g) - 1)
    f[:, 7] = 0  # a dead latent
    sums = ReconSums(10)
    for s in range(0, 300, 64):
        sums.update(x[s:s + 64], rec[s:s + 64], f[s:s + 64])
    r = sums.result(dense_density=0.2)
    X, R, F = x.double().numpy(), rec.double().numpy(), f.double().numpy()
    fvu = ((X - R) ** 2).sum() / ((X - X.mean(0)) ** 2).sum()
    assert r["fvu"] == pytest.approx(fvu, rel=1e-10) and r["explained_variance"] == pytest.approx(1 - fvu)
    assert r["l0"] == pytest.approx((F != 0).sum(1).mean())
    density = (F != 0).mean(0)
    assert np.array_equal(r["density"], density) and r["dead_fraction"] == pytest.approx(0.1)
    assert r["dense_fraction"] == pytest.approx((density > 0.2).mean())
    counts, edges, dead = density_histogram(density, 7)
    assert dead == 1 and counts.sum() == 9 and edges[0] == -7 and edges[-1] == 0
    assert loss_recovered(1.0, 1.5, 3.0) == pytest.approx(0.75) and np.isnan(loss_recovered(1.0, 1.0, 1.0))
    assert kl_recovered(0.5, 2.0) == pytest.approx(0.75)


@needs_model
def test_evals_equal_a_hand_written_splice_loop(tmp_path):
    """Two shipped SAEs on 4 blocks of held-out text: FVU/L0 from interp.saes.reconstruct on the captured rows, CE
    spliced/zero/mean from run_with_hooks with hooks written here, KL from the logits in float64."""
    from interp.models import load
    from interp.saes import load_sae, reconstruct, sae_entries
    from interp.sources import token_blocks

    names = ["L2_resid_topk_x4", "L2_attn_z_topk_x4"]
    cfg = Config(names=names, n_tokens=4 * 64, ctx=64, batch_size=3)
    res = run(cfg)
    model = load(DEFAULT_MODEL)
    blocks = token_blocks("embedded", model.tokenizer, ctx=64, n_tokens=4 * 64)
    entries = {e["name"]: e for e in sae_entries("data/saes/toy-pythia-4l")}
    rows = {r["name"]: r for r in res.details["saes"]}
    with torch.no_grad():
        clean = model(blocks).double()
    lc = torch.log_softmax(clean, -1)[:, :-1]
    tgt = blocks[:, 1:, None]
    ce_clean = float(-lc.gather(-1, tgt).mean())
    for name in names:
        hook, sae = entries[name]["hook"], load_sae(entries[name]["abs_path"])
        with torch.no_grad():
            acts = model.run_with_cache(blocks, names_filter=hook)[1][hook]
        x = acts.reshape(-1, sae.cfg.d_in)
        rec, l0 = reconstruct(sae, x)
        fvu = float(((x - rec).double() ** 2).sum() / ((x.double() - x.double().mean(0)) ** 2).sum())
        assert rows[name]["fvu"] == pytest.approx(fvu, rel=1e-4) and rows[name]["l0"] == pytest.approx(float(l0.mean()))
        mean = acts.double().mean((0, 1)).float()

        def spliced(a, hook, sae=sae):
            return reconstruct(sae, a.reshape(-1, sae.cfg.d_in))[0].reshape(a.shape)

        ce = {}
        for kind, fn in (("sae", spliced), ("zero", lambda a, hook: torch.zeros_like(a)),
                         ("mean", lambda a, hook, m=mean: m.expand_as(a).clone())):
            with torch.no_grad():
                logits = model.run_with_hooks(blocks, fwd_hooks=[(hook, fn)]).double()
            lp = torch.log_softmax(logits, -1)[:, :-1]
            ce[kind] = float(-lp.gather(-1, tgt).mean())
            kl = float((lc.exp() * (lc - lp)).sum(-1).mean())
            assert rows[name][f"ce_{kind}"] == pytest.approx(ce[kind], rel=1e-4)
            assert rows[name][f"kl_{kind}"] == pytest.approx(kl, rel=1e-3, abs=1e-6)
        assert rows[name]["ce_clean"] == pytest.approx(ce_clean, rel=1e-5)
        assert rows[name]["ce_loss_recovered_zero"] == pytest.approx(
            (ce["zero"] - ce["sae"]) / (ce["zero"] - ce_clean), rel=1e-3)
    assert all(f.consistent() for f in res.findings)
    back = SAEEvalsResult.load(res.save(tmp_path / "r"))
    assert back.details["saes"] == res.details["saes"] and {"tradeoff", "loss_recovered", "density"} <= set(
        back.figures())
