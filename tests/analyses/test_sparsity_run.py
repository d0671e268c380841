"""The activation-sparsity analysis on the shipped ReLU suite: the census against brute force on captured
activations, CETT-PPL-p% against a dense grid over c, the result's findings against its numbers, save/load."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from interp.models import embedded_names

needs_relu = pytest.mark.skipif("toy-pythia-relu" not in embedded_names(), reason="the ReLU suite is not in data/")


@pytest.fixture(scope="module")
def quick_result():
    from analyses.sparsity import ANALYSIS

    cfg = ANALYSIS.make_config(quick=True, suites=["toy-pythia-relu"], model="toy-pythia-relu")
    return cfg, ANALYSIS.run(cfg)


@needs_relu
def test_census_equals_brute_force_on_captured_activations(quick_result):
    from interp.models import load, load_tokenizer
    from interp.sources import token_blocks

    cfg, res = quick_result
    blocks = token_blocks("embedded", load_tokenizer("toy-pythia-relu"), ctx=cfg.ctx,
                          n_tokens=cfg.n_tokens + cfg.calib_tokens)[: cfg.n_tokens // cfg.ctx]
    steps = list(res.arrays["toy-pythia-relu.steps"])
    for i in (0, len(steps) - 1):
        model = load("toy-pythia-relu", step=int(steps[i]))
        with torch.no_grad():
            cache = model.run_with_cache(blocks, names_filter=lambda n: n.endswith("mlp.hook_post"))[1]
        for li in range(model.cfg.n_layers):
            a = cache[f"blocks.{li}.mlp.hook_post"].double().numpy()
            assert res.arrays["toy-pythia-relu.nnz"][i, li] == pytest.approx((a != 0).mean(), abs=1e-12)
            assert res.arrays["toy-pythia-relu.fat_0.01"][i, li] == pytest.approx((np.abs(a) > 0.01).mean(),
                                                                                  abs=1e-12)
    assert res.arrays["toy-pythia-relu.nnz"][0].mean() > res.arrays["toy-pythia-relu.nnz"][-1].mean()


@needs_relu
@pytest.mark.slow
def test_ppl_sparsity_bisection_against_a_dense_grid(quick_result):
    """Algorithm 1's c* against the largest c of a dense grid whose mean PPL ratio (same checkpoints, same
    thresholds) stays below 1 + p; the ratio at c* lies in [1 + p − 0.002, 1 + p] (acceptance 4)."""
    from analyses.sparsity.studies import _edits_at, _loss, _mlp_state, _suite

    cfg, res = quick_result
    info = res.details["suites"]["toy-pythia-relu"]
    c_star, p = info["c_star"]["0.01"], 0.01
    suite = _suite(cfg, "toy-pythia-relu")
    states = [_mlp_state(cfg, suite, s) for s in suite.post_warmup()[-cfg.last_k:]]

    def ratio(c):
        return np.mean([math.exp(_loss(m, suite.eval_blocks, _edits_at(c, h, r, w), cfg.batch_size) - d)
                        for m, h, r, w, d in states])

    grid = np.linspace(0.0, 0.5, 26)
    ok = [c for c in grid if ratio(c) < 1 + p]
    assert abs(c_star - max(ok)) <= 0.02 + cfg.search_eps


@needs_relu
def test_findings_cite_their_numbers_and_the_result_round_trips(quick_result, tmp_path):
    from analyses.sparsity import SparsityResult

    _, res = quick_result
    ppl = res.details["suites"]["toy-pythia-relu"]["ppl_ratio_at_c_star"]["0.01"]
    assert 1 + 0.01 - 0.002 <= ppl <= 1 + 0.01  # acceptance 4: the PPL ratio at c* sits just under 1 + p
    assert all(f.consistent() for f in res.findings)
    for f in res.findings:
        if f.measured is not None:
            assert res.summary[f.key] == pytest.approx(f.measured), f.key
    trend = res.details["suites"]["toy-pythia-relu"]["trends"]["0.01"]
    assert trend["relu"]["r2"] >= trend["silu"]["r2"]  # the falling ReLU ratio is not the rising law
    back = SparsityResult.load(res.save(tmp_path / "r"))
    assert back.summary == res.summary and {"census", "trends", "methods"} <= set(back.figures())
