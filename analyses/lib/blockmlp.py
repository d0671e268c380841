"""The synthetic block-diagonal MLP (ApolloResearch/rib, rib/models/modular_mlp.py): the ideal tiny ground truth.

Every layer's weight is block_diag(σ0·randn(w0, w0), σ1·randn(w1, w1)), so the two blocks never interact.
`block_product_data` pairs every block-A sample with every block-B sample, which makes the blocks statistically
independent in the sample (spec lib.md, "when the cross-block edge mass is exactly zero").
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def block_diagonal_mlp(width: int = 10, n_hidden: int = 2, first_block: int | None = None, sigmas=(1.0, 1.0),
                       seed: int = 123, bias: bool = False) -> nn.Sequential:
    """Linear/ReLU MLP (width -> width x n_hidden -> width) with block-diagonal weights, in float64."""
    w0 = first_block or width // 2
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(n_hidden + 1):
        lin = nn.Linear(width, width, bias=bias).double()
        with torch.no_grad():
            A = sigmas[0] * torch.randn(w0, w0, generator=g, dtype=torch.float64) / w0 ** 0.5
            B = sigmas[1] * torch.randn(width - w0, width - w0, generator=g, dtype=torch.float64) / (width - w0) ** 0.5
            lin.weight.copy_(torch.block_diag(A, B))
            if bias:
                lin.bias.copy_(0.1 * torch.randn(width, generator=g, dtype=torch.float64))
        layers.append(lin)
        if i < n_hidden:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def block_product_data(n_per_block: int = 32, width: int = 10, first_block: int | None = None,
                       variances=(1.0, 1.0), seed: int = 123) -> Tensor:
    """[n², width] inputs: every block-A normal sample concatenated with every block-B normal sample."""
    w0 = first_block or width // 2
    g = torch.Generator().manual_seed(seed)
    a = variances[0] ** 0.5 * torch.randn(n_per_block, w0, generator=g, dtype=torch.float64)
    b = variances[1] ** 0.5 * torch.randn(n_per_block, width - w0, generator=g, dtype=torch.float64)
    return torch.cat([a.repeat_interleave(n_per_block, 0), b.repeat(n_per_block, 1)], 1)
