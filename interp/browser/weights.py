"""What the browser reads from the SAE's and the model's weights: decoder-cosine neighbours and logit effects.

Both are computed in blocks of latents so that memory is O(block · max(d_sae, d_vocab)) beside the weights.
Logit effects are the rows of W_dec · W_U (the direct effect of a unit activation on the logits, without the final
layer norm, as dashboards usually show them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor


def load_sae_weights(sae: str | Path | Any) -> dict[str, Tensor]:
    """W_dec `[d_sae, d_in]` and b_dec `[d_in]` (float32) of an SAE folder (sae-lens, or another library's, read by
    `interp.sae_formats`) or a loaded SAE; a transcoder's
    decoder writes its output hook (`[d_sae, d_out]`, `[d_out]`), and a skip transcoder adds W_skip `[d_out, d_in]`."""
    if isinstance(sae, (str, Path)) and (Path(sae) / "sae_weights.safetensors").is_file():
        from safetensors.torch import load_file

        w = load_file(str(Path(sae) / "sae_weights.safetensors"))
    else:
        if isinstance(sae, (str, Path)):  # another library's folder (sparsify, Gemma Scope, dictionary_learning)
            from interp.saes import load_sae

            sae = load_sae(sae)
        w = {k: getattr(sae, k) for k in ("W_dec", "b_dec", "W_skip") if getattr(sae, k, None) is not None}
    return {k: w[k].detach().float().cpu() for k in ("W_dec", "b_dec", "W_skip") if k in w}


@torch.no_grad()
def decoder_neighbours(W_dec: Tensor, n: int = 10, block: int = 1024, device: str | torch.device = "cpu"
                       ) -> tuple[Tensor, Tensor]:
    """Per latent, the n other latents of highest decoder cosine similarity: ids `[d, n]`, cosines `[d, n]`."""
    W = W_dec.to(device, torch.float32)
    Wn = W / W.norm(dim=1, keepdim=True).clamp(min=1e-12)
    d = Wn.shape[0]
    n = min(n, d - 1)
    ids, sims = [], []
    for a in range(0, d, block):
        cos = Wn[a:a + block] @ Wn.T
        cos[torch.arange(cos.shape[0]), torch.arange(a, a + cos.shape[0])] = float("-inf")  # not itself
        top = torch.topk(cos, n, dim=1)
        ids.append(top.indices.cpu())
        sims.append(top.values.cpu())
    return torch.cat(ids), torch.cat(sims)


@torch.no_grad()
def logit_effects(W_dec: Tensor, W_U: Tensor, n: int = 10, block: int = 1024, device: str | torch.device = "cpu"
                  ) -> dict[str, Tensor]:
    """Top-n positive and negative entries of each row of W_dec · W_U: {"pos_ids", "pos", "neg_ids", "neg"}."""
    Wd, Wu = W_dec.to(device, torch.float32), W_U.to(device, torch.float32)
    out: dict[str, list[Tensor]] = {"pos_ids": [], "pos": [], "neg_ids": [], "neg": []}
    n = min(n, Wu.shape[1])
    for a in range(0, Wd.shape[0], block):
        eff = Wd[a:a + block] @ Wu
        hi, lo = torch.topk(eff, n, dim=1), torch.topk(eff, n, dim=1, largest=False)
        out["pos_ids"].append(hi.indices.cpu())
        out["pos"].append(hi.values.cpu())
        out["neg_ids"].append(lo.indices.cpu())
        out["neg"].append(lo.values.cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def unembedding(model: Any) -> Tensor | None:
    """W_U `[d_model, d_vocab]` of a HookedTransformer (or anything with a W_U / unembed.W_U), else None."""
    for get in (lambda m: m.W_U, lambda m: m.unembed.W_U):
        try:
            w = get(model)
        except AttributeError:
            continue
        if isinstance(w, Tensor) and w.dim() == 2:
            return w.detach().float().cpu()
    return None
