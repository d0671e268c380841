"""Sparse forwards against hand computations: the kernel's thresholded linear layer equals the dense layer on masked
inputs; a hook edit equals re-running the block's matrices on masked inputs; the norm-folded form of a WINA mask."""

from __future__ import annotations

import pytest
import torch

from analyses.sparsity.forward import InputRule, cett_edit, channel_norms, consumer_matrix
from interp.kernels import sparse_linear


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9])
def test_thresholded_linear_equals_dense_on_masked_inputs(sparsity):
    """Acceptance 1: float64, dense backend, bitwise; and the norm-folded WINA form to 1e-12 relative."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 64, generator=g, dtype=torch.float64)
    w = torch.randn(48, 64, generator=g, dtype=torch.float64)
    b = torch.randn(48, generator=g, dtype=torch.float64)
    t = float(torch.quantile(x.abs().flatten(), sparsity)) if sparsity else 0.0
    want = torch.nn.functional.linear(x * (x.abs() > t), w, b)
    assert torch.equal(sparse_linear(x, w, b, threshold=t, backend="dense"), want)
    c = w.norm(dim=0)  # WINA: keep |x_j| c_j > t'; fold c into x and 1/c into W for the scalar-threshold kernel
    t2 = float(torch.quantile((x.abs() * c).flatten(), sparsity)) if sparsity else 0.0
    masked = torch.nn.functional.linear(x * ((x.abs() * c) > t2), w, b)
    folded = sparse_linear(x * c, w / c, b, threshold=t2, backend="dense")
    assert float((folded - masked).norm() / masked.norm()) <= 1e-12


def test_input_rule_at_a_hook_equals_the_block_on_masked_inputs(tiny_model, tokens):
    """A TEAL rule at blocks.0.ln2.hook_normalized: the MLP output equals W_out·act(W_in·(masked x) + b_in) + b_out."""
    from interp.intervene import edit_hooks

    model = tiny_model
    hook = "blocks.0.ln2.hook_normalized"
    with torch.no_grad():
        x = model.run_with_cache(tokens, names_filter=hook)[1][hook]
    t = float(x.abs().median())
    rule = InputRule(t)
    store = {"blocks.0.hook_mlp_out": None}
    with torch.no_grad(), edit_hooks(model, {hook: rule}, store):
        model(tokens)
    mlp = model.blocks[0].mlp
    xm = x * (x.abs() > t)
    want = mlp.act_fn(xm @ mlp.W_in + mlp.b_in) @ mlp.W_out + mlp.b_out
    torch.testing.assert_close(store["blocks.0.hook_mlp_out"], want, rtol=1e-5, atol=1e-5)
    c = channel_norms(model, 0, "qkv")
    w = consumer_matrix(model, 0, "qkv")
    assert c.shape == (model.cfg.d_model,) and w.shape == (model.cfg.d_model, 3 * model.cfg.n_heads *
                                                           model.cfg.d_head)
    b = model.blocks[0].attn
    by_hand = sum((m ** 2).sum((0, 2)) for m in (b.W_Q, b.W_K, b.W_V))
    assert torch.allclose(c.float() ** 2, by_hand, rtol=1e-5)


def test_rsparse_rule_passes_skipped_channels_through_the_low_rank_part():
    """W (x⊙m + V_r V_rᵀ (x⊙(1−m))) = W (x⊙m) + U_r S_r V_rᵀ (x⊙(1−m)) (the paper's output form)."""
    g = torch.Generator().manual_seed(1)
    w = torch.randn(16, 24, generator=g, dtype=torch.float64)  # [in, out] as consumer_matrix gives it
    x = torch.randn(2, 5, 16, generator=g, dtype=torch.float64)
    _, _, vh = torch.linalg.svd(w.T, full_matrices=False)
    r = 6
    rule = InputRule(0.7, scale=w.norm(dim=1), lowrank=vh[:r].T @ vh[:r])
    keep = (x.abs() * w.norm(dim=1)) > 0.7
    u, s, vh2 = torch.linalg.svd(w.T, full_matrices=False)
    want = (x * keep) @ w + ((x * ~keep) @ vh2[:r].T * s[:r]) @ u[:, :r].T
    torch.testing.assert_close(rule(x) @ w, want, rtol=1e-12, atol=1e-12)


def test_cett_edit_zeros_exactly_the_neurons_below_tau():
    a = torch.tensor([[[0.5, -2.0, 0.1]]], dtype=torch.float64)
    w_out = torch.tensor([[1.0, 0.0], [0.0, 0.5], [3.0, 4.0]], dtype=torch.float64)  # row norms 1, 0.5, 5
    out = cett_edit(w_out, tau=0.6)(a)  # ‖n‖ = 0.5, 1.0, 0.5 -> keep only neuron 1
    assert out.tolist() == [[[0.0, -2.0, 0.0]]]
