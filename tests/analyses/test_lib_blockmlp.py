"""LIB on the synthetic block-diagonal MLP: functional self-consistency and exact block separation."""

import pytest
import torch

from analyses.lib.basis import lib_build
from analyses.lib.blockmlp import block_diagonal_mlp, block_product_data
from analyses.lib.linalg import gram
from analyses.lib.sections import mlp_lib_model

torch.set_num_threads(1)
NODES = ["0", "2", "4", "output"]


@pytest.fixture(scope="module")
def block():
    model = block_diagonal_mlp(width=10, n_hidden=2, seed=123)
    x = block_product_data(32, 10, variances=(1.0, 1.0), seed=123)     # 1024 samples, blocks independent
    return mlp_lib_model(model, NODES), x


def _norm(v: torch.Tensor) -> torch.Tensor:
    return v / v.sum()


def test_functional_self_consistency(block):
    """(1-alpha)^2 + functional: diag(Cᵀ G C) ∝ |Σ_i E[i, :]| ∝ Λ (atol 1e-6)."""
    lm, x = block
    kw = dict(basis="(1-alpha)^2", center=False, integration="gauss-legendre", n_intervals=4)
    layers, edges = lib_build(lm, x, edge_formula="functional", **kw)
    acts = lm.all_acts(x)
    for l in range(len(edges)):
        L = layers[l]
        size = torch.diag(L.C.T @ gram(acts[l]) @ L.C)
        torch.testing.assert_close(_norm(size), _norm(L.Lam), rtol=0, atol=1e-6)
        torch.testing.assert_close(_norm(size), _norm(edges[l].sum(0).abs()), rtol=0, atol=1e-6)
    _, sq = lib_build(lm, x, edge_formula="squared", **kw)
    assert all(bool((E >= 0).all()) and float(E.sum()) > 0 for E in sq)


def _block_of(C: torch.Tensor, w0: int = 5) -> torch.Tensor:
    """0 / 1 for directions living in block A / B (rows 0..w0-1 / w0..); asserts they are pure."""
    a, b = (C[:w0] ** 2).sum(0), (C[w0:10] ** 2).sum(0)
    assert float((torch.minimum(a, b) / (a + b)).max()) < 1e-10
    return (b > a).long()


def test_block_structure_cross_edges_vanish(block):
    """jacobian + squared on the product design: cross-block edge mass < 1e-8 (constant node excluded)."""
    lm, x = block
    layers, edges = lib_build(lm, x, basis="jacobian", center=True, edge_formula="squared")
    for l, E in enumerate(edges):
        blk_in = _block_of(layers[l].C[:, 1:])
        C_out = layers[l + 1].C if NODES[l + 1] == "output" else layers[l + 1].C[:, 1:]
        blk_out = _block_of(C_out)
        E_ = E[:, 1:] if NODES[l + 1] == "output" else E[1:, 1:]
        cross = blk_out[:, None] != blk_in[None, :]
        assert float(E_[cross].sum() / E_.sum()) < 1e-8
        assert 0 < int(blk_in.sum()) < len(blk_in)          # both blocks present
