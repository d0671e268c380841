"""Downstream loss (Fig. 9, `downstream_ce.py`): splice x̂, x̂ + LinearError, x̂ + NonlinearError into the residual
stream at the selected positions with a forward hook and measure next-token cross-entropy there."""

from __future__ import annotations

import torch

from interp.intervene import per_token_nll


@torch.inference_mode()
def downstream_loss(model: torch.nn.Module, data, hook: str, recon: torch.Tensor, dec, n_blocks: int,
                    batch_size: int = 32) -> dict[str, float]:
    """Mean CE over selected rows (where a next token exists) for clean and three spliced variants."""
    blocks, mask = data.blocks[:n_blocks], data.row_mask[:n_blocks]
    n_rows = int(mask.sum())
    variants = {"clean": None, "sae": recon[:n_rows],
                "sae_plus_linear": (recon + dec.linear_error)[:n_rows],
                "sae_plus_nonlinear": (recon + dec.nonlinear_error)[:n_rows]}
    scored = mask.clone()
    scored[:, -1] = False  # no next token at the last position
    out: dict[str, float] = {}
    for name, values in variants.items():
        total, count, offset = 0.0, 0, 0
        for s in range(0, blocks.shape[0], batch_size):
            b, m = blocks[s:s + batch_size], mask[s:s + batch_size]
            k = int(m.sum())
            hooks = {}
            if values is not None:
                vals = values[offset:offset + k]

                def splice(act: torch.Tensor, hook=None, m=m, vals=vals) -> torch.Tensor:
                    act = act.clone()
                    act[m] = vals.to(act.dtype)
                    return act
                hooks = {hook: splice}
            lpt = per_token_nll(model, b, hooks)
            sc = scored[s:s + batch_size][:, :-1]
            total += float(lpt[sc].double().sum())
            count += int(sc.sum())
            offset += k
        out[name] = total / max(count, 1)
    for name in ("sae", "sae_plus_linear", "sae_plus_nonlinear"):
        out[f"delta_{name}"] = out[name] - out["clean"]
    out["n_scored"] = count
    return out
