"""Zero / mean interventions on massive activations and the loss change (Sun et al. §3, exp3 `set_zero`/`set_mean`).

At layer ℓ's output (blocks.ℓ.hook_resid_post) the massive entries — the given dims at the positions where
|h| ≥ rel_ratio · median|h| of that input (or at every position with positions="all") — are set to 0 or to
their mean over the clean run; the next-token loss is compared with the clean loss. A control intervenes on the
same number of randomly chosen non-massive dims at the same positions.
"""

from __future__ import annotations

import numpy as np
import torch

from interp.errors import ConfigError

from .method import median_abs


def _loss(model: torch.nn.Module, tokens: torch.Tensor, fwd_hooks: list) -> float:
    """Mean next-token cross-entropy (nats/token) under the given (hook, fn(x) -> x) edits, on any model the
    capture layer supports (transformer-lens, natively run Hugging Face models)."""
    from interp.intervene import edit_hooks, model_logits, next_token_stats

    with torch.inference_mode(), edit_hooks(model, dict(fwd_hooks)):
        logits = model_logits(model, tokens)
    return next_token_stats(logits, logits, tokens)[0]


def _mask(h: torch.Tensor, dims: list[int], positions: str, rel_ratio: float) -> torch.Tensor:
    """Bool [B, S, len(dims)]: which entries of the chosen dims to overwrite."""
    sel = h[..., dims]
    if positions == "all":
        return torch.ones_like(sel, dtype=torch.bool)
    med = median_abs(h)  # [B]
    return sel.abs() >= rel_ratio * med[:, None, None]


def intervene_massive(model: torch.nn.Module, tokens: torch.Tensor, layer: int, dims: list[int],
                      mode: str = "zero", positions: str = "massive", rel_ratio: float = 20.0,
                      control_seed: int | None = 0) -> dict:
    """Loss change when the massive entries (layer, dims) are set to zero or their mean; with a random control.

    tokens [B, S]; returns clean/intervened losses, delta, the number of entries changed, and (control_seed not
    None) the same for random non-massive dims.
    """
    if mode not in ("zero", "mean"):
        raise ConfigError(f"unknown intervention mode {mode!r}", hint="use 'zero' or 'mean'")
    if positions not in ("massive", "all"):
        raise ConfigError(f"unknown positions {positions!r}", hint="use 'massive' or 'all'")
    n_layers = model.cfg.n_layers
    if not 0 <= layer < n_layers:
        raise ConfigError(f"layer {layer} out of range 0..{n_layers - 1}", hint="pick a detected layer")
    if not dims:
        raise ConfigError("no dims to intervene on", hint="run the detection first or pass dims")
    hook = f"blocks.{layer}.hook_resid_post"
    from interp.capture import capture

    h = capture(model, tokens, hooks=hook, dtype=torch.float64)[hook]
    d_model = h.shape[-1]

    def run(ds: list[int]) -> dict:
        m = _mask(h, ds, positions, rel_ratio)
        sel = h[..., ds]
        mean_val = (sel * m).sum((0, 1)) / m.sum((0, 1)).clamp_min(1)  # [len(ds)] mean over overwritten entries
        fill = torch.zeros_like(mean_val) if mode == "zero" else mean_val

        def fn(x: torch.Tensor) -> torch.Tensor:
            mm = _mask(x.to(torch.float64), ds, positions, rel_ratio)
            sub = x[..., ds]
            x[..., ds] = torch.where(mm, fill.to(x.dtype).expand_as(sub), sub)
            return x

        return {"loss": _loss(model, tokens, [(hook, fn)]), "n_entries": int(m.sum()),
                "fill": fill.tolist()}

    clean = _loss(model, tokens, [])
    hit = run(list(dims))
    out = {"layer": layer, "dims": list(dims), "mode": mode, "positions": positions, "loss_clean": clean,
           "loss_intervened": hit["loss"], "delta_loss": hit["loss"] - clean, "n_entries": hit["n_entries"],
           "fill": hit["fill"]}
    if control_seed is not None:
        rng = np.random.default_rng(control_seed)
        pool = np.setdiff1d(np.arange(d_model), dims)
        ctrl = sorted(int(v) for v in rng.choice(pool, size=min(len(dims), pool.size), replace=False))
        # the control overwrites the same positions as the massive entries (all their dims' positions)
        m_pos = _mask(h, list(dims), positions, rel_ratio).any(-1)  # [B, S]

        def fn_ctrl(x: torch.Tensor) -> torch.Tensor:
            sub = x[..., ctrl]
            fill = torch.zeros_like(sub) if mode == "zero" else h[..., ctrl].mean((0, 1)).to(x.dtype).expand_as(sub)
            x[..., ctrl] = torch.where(m_pos[..., None], fill, sub)
            return x

        loss_c = _loss(model, tokens, [(hook, fn_ctrl)])
        out.update(control_dims=ctrl, loss_control=loss_c, delta_loss_control=loss_c - clean)
    return out
