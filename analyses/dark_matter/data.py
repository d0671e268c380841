"""Activations for the study: the hooks around one layer as flattened `[N, d]` rows, plus token ids and loss.

Hooks (transformer-lens names): the target residual stream `blocks.L.hook_resid_post`, the previous layer's
`blocks.{L-1}.hook_resid_post`, the same layer's `hook_mlp_out` and the attention heads' outputs before W_O,
`attn.hook_z` flattened over heads (the paper's attention component, §7). `hook_attn_out` (the attention output in
the residual basis) is available as component "attn_out" for SAE folders trained on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interp.errors import ConfigError

COMPONENTS = ("resid", "prev_resid", "mlp_out", "attn_z", "attn_out")


def component_hooks(layer: int) -> dict[str, str]:
    """Component name -> hook name around residual layer `layer` (prev_resid is resid_pre of layer 0 at L=0)."""
    prev = f"blocks.{layer - 1}.hook_resid_post" if layer > 0 else "blocks.0.hook_resid_pre"
    return {"resid": f"blocks.{layer}.hook_resid_post", "prev_resid": prev,
            "mlp_out": f"blocks.{layer}.hook_mlp_out", "attn_z": f"blocks.{layer}.attn.hook_z",
            "attn_out": f"blocks.{layer}.hook_attn_out"}


@dataclass
class Activations:
    """Rows `[N, d]` per component, the token id `[N]`, (sequence, position) `[N, 2]`, the blocks and row mask."""

    acts: dict[str, torch.Tensor]
    token_ids: torch.Tensor
    seq_pos: torch.Tensor
    blocks: torch.Tensor | None     # [n_blocks, ctx] token ids (None when read from a cache without tokens)
    row_mask: torch.Tensor | None   # [n_blocks, ctx] bool: which positions became rows
    token_loss: torch.Tensor | None  # [N] next-token loss at each row (NaN where undefined)
    source: str


def middle_layer(model: torch.nn.Module) -> int:
    """n_layers // 2 (transformer-lens models and natively run Hugging Face ones both say n_layers in cfg)."""
    return int(model.cfg.n_layers) // 2


@torch.inference_mode()
def per_token_loss(model: torch.nn.Module, blocks: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """[n_blocks, ctx] next-token cross-entropy at each position (NaN at the last position)."""
    from interp.intervene import per_token_nll

    out = []
    for s in range(0, blocks.shape[0], batch_size):
        b = blocks[s:s + batch_size]
        lpt = per_token_nll(model, b)  # [batch, ctx - 1]
        out.append(torch.cat([lpt.float(), torch.full((b.shape[0], 1), float("nan"))], 1))
    return torch.cat(out)


def collect(model: torch.nn.Module, cfg, layer: int, components: tuple[str, ...] = COMPONENTS) -> Activations:
    """Capture (or read from cfg.cache) the components' hooks at the selected positions, with token ids/loss."""
    from interp.capture import capture
    from interp.positions import Positions

    hooks = {c: h for c, h in component_hooks(layer).items() if c in components}
    if cfg.cache:
        return _from_cache(cfg.cache, hooks, model, cfg)
    from interp.sources import token_blocks

    tok = getattr(model, "tokenizer", None)
    if tok is None:
        from interp.models import load_tokenizer
        tok = load_tokenizer(cfg.model)
    blocks = token_blocks(cfg.data, tok, ctx=cfg.ctx, n_tokens=cfg.n_tokens)
    pos = Positions.parse(cfg.positions)
    mask = pos.row_mask(blocks.shape[0], blocks.shape[1])
    got = capture(model, blocks, hooks=list(hooks.values()), positions=pos, batch_size=cfg.batch_size)
    acts = {name: got[h].float().reshape(int(mask.sum()), -1) for name, h in hooks.items()}
    seq, p = torch.nonzero(mask, as_tuple=True)
    loss = per_token_loss(model, blocks, cfg.batch_size)[mask]
    return Activations(acts=acts, token_ids=blocks[mask], seq_pos=torch.stack([seq, p], 1), blocks=blocks,
                       row_mask=mask, token_loss=loss, source=str(cfg.data))


def _from_cache(cache_dir: str, hooks: dict[str, str], model: torch.nn.Module, cfg) -> Activations:
    """The components' rows from an interp cache. A cache of whole sequences (positions "all") gives back its token
    blocks, so the position selection, per-token loss and spliced-loss study run as on captured activations;
    other caches give their stored rows as they are (no blocks, no loss)."""
    from interp.cache import open_cache
    from interp.models import model_id
    from interp.positions import Positions

    reader = open_cache(cache_dir)
    missing = [h for h in hooks.values() if h not in reader.hooks]
    if missing:
        raise ConfigError(f"cache {cache_dir} lacks hooks {missing}",
                          hint=f"extract them: interp extract --hooks {' '.join(hooks.values())}")
    ident = reader.manifest.identity
    if ident.get("model") not in (None, model_id(model)):
        raise ConfigError(f"cache {cache_dir} was extracted from {ident['model']}, the analysis runs "
                          f"{model_id(model)}", hint="pass the cache's model and checkpoint, or re-extract")
    ctx = int(ident.get("ctx", 0))
    if reader.manifest.layout.get("rows_per_block") != ctx:  # a position selection was applied at extraction
        n = min(reader.n_rows, cfg.n_tokens)
        acts = {name: reader.read(h, 0, n).float().reshape(n, -1) for name, h in hooks.items()}
        tokens = reader.tokens[:n]
        return Activations(acts=acts, token_ids=tokens[:, 0], seq_pos=tokens[:, 1:3], blocks=None, row_mask=None,
                           token_loss=None, source=f"cache:{cache_dir}")
    if ctx != cfg.ctx:
        raise ConfigError(f"cache {cache_dir} holds blocks of {ctx} tokens, the analysis asks for ctx={cfg.ctx}",
                          hint=f"pass ctx={ctx} (and positions for that length)")
    n_blocks = min(reader.n_rows, cfg.n_tokens) // ctx
    if n_blocks == 0:
        raise ConfigError(f"cache {cache_dir} holds fewer than one block of {ctx} tokens", hint="extract more")
    n = n_blocks * ctx
    blocks = reader.tokens[:n, 0].reshape(n_blocks, ctx)
    mask = Positions.parse(cfg.positions).row_mask(n_blocks, ctx)
    keep = mask.reshape(-1)
    acts = {name: reader.read(h, 0, n).float().reshape(n, -1)[keep] for name, h in hooks.items()}
    seq, p = torch.nonzero(mask, as_tuple=True)
    return Activations(acts=acts, token_ids=blocks[mask], seq_pos=torch.stack([seq, p], 1), blocks=blocks,
                       row_mask=mask, token_loss=per_token_loss(model, blocks, cfg.batch_size)[mask],
                       source=f"cache:{cache_dir}")
