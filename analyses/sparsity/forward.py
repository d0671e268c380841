"""Sparse forwards: edits at hook points that zero what a method skips (transformer-lens models and natively run
Hugging Face decoders alike; their hook names are the same, their consuming matrices come from `weights`).

Output sparsity (CETT, Sparsing Law): at blocks.ℓ.mlp.hook_post zero a_i where |a_i| · ‖W_out[i, :]‖ < τ_ℓ.
Input sparsity of a projection (TEAL, WINA, R-Sparse), on the hook that feeds it:
    mlp_in   blocks.ℓ.ln2.hook_normalized   consumed by W_in  [d_model, d_mlp] (gated MLPs: W_gate and W_in)
    mlp_out  blocks.ℓ.mlp.hook_post          consumed by W_out [d_mlp, d_model]
    qkv      blocks.ℓ.ln1.hook_normalized    consumed by W_Q, W_K, W_V (one input, three matrices)
    attn_out blocks.ℓ.attn.hook_z            consumed by W_O, heads flattened (native: o_proj's flat input)
A channel's weight norm c_j is the norm of everything the channel feeds (for qkv, over the three matrices).
R-Sparse as an input edit: W (x⊙m + V_r V_rᵀ (x⊙(1−m))) = W (x⊙m) + U_r S_r V_rᵀ (x⊙(1−m)), so the skipped
channels pass through the rank-r part exactly as the paper's output formula says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .weights import PROJECTIONS, consumer_matrix

__all__ = ["PROJECTIONS", "HOOKS", "consumer_matrix", "channel_norms", "hook_name", "InputRule", "cett_edit",
           "projection_rows"]

HOOKS = {"qkv": "blocks.{l}.ln1.hook_normalized", "attn_out": "blocks.{l}.attn.hook_z",
         "mlp_in": "blocks.{l}.ln2.hook_normalized", "mlp_out": "blocks.{l}.mlp.hook_post"}


def channel_norms(model: torch.nn.Module, layer: int, proj: str) -> torch.Tensor:
    """c_j = ‖row j of the consuming matrix‖₂ (the HF column norm)."""
    return consumer_matrix(model, layer, proj).detach().double().norm(dim=1)


def hook_name(proj: str, layer: int) -> str:
    """The canonical name of the hook whose output projection `proj` of `layer` consumes."""
    return HOOKS[proj].format(l=layer)


@dataclass
class InputRule:
    """Keep channel j of a projection's input where score_j = |x_j| · scale_j > t (scale 1: TEAL; c: WINA)."""

    t: float
    scale: torch.Tensor | None = None
    lowrank: torch.Tensor | None = None  # V_r V_rᵀ [n, n] for R-Sparse, else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(*shape[:2], -1)  # per-head hooks: [b, p, heads·d_head]
        score = flat.abs() if self.scale is None else flat.abs() * self.scale.to(flat.dtype)
        keep = score > self.t
        out = flat * keep
        if self.lowrank is not None:
            out = out + (flat * ~keep) @ self.lowrank.to(flat.dtype)
        return out.reshape(shape)


def cett_edit(w_out: torch.Tensor, tau: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Zero the neurons whose output norm |a_i| · ‖W_out[i]‖ is below τ (Sparsing Law's strict <)."""
    norms = w_out.detach().norm(dim=1)

    def fn(a: torch.Tensor) -> torch.Tensor:
        return a * ((a.abs() * norms.to(a.dtype)) >= tau)

    return fn


def projection_rows(acts: torch.Tensor) -> torch.Tensor:
    """A hook's activations as rows [n_tokens, n_channels] (heads flattened)."""
    return acts.reshape(acts.shape[0] * acts.shape[1], -1) if acts.ndim > 2 else acts
