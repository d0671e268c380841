"""The matrices that consume each sparsified input, for a transformer-lens model or a natively run HF decoder.

The analysis edits four inputs per layer (forward.HOOKS) and weighs each input channel by the norm of everything
it feeds, so it needs, per layer and projection, the consuming matrix as [in, out] (rows = input channels):

    projection  input hook                    transformer-lens             Hugging Face (Linear weight [out, in])
    qkv         blocks.L.ln1.hook_normalized  W_Q | W_K | W_V, heads flat  cat(q_proj, k_proj, v_proj).T
                                                                           (Phi-3: qkv_proj.T)
    attn_out    blocks.L.attn.hook_z          W_O [h·d_head, d_model]      o_proj.T
    mlp_in      blocks.L.ln2.hook_normalized  W_gate | W_in (gated), W_in  cat(gate_proj, up_proj).T
                                                                           (Phi-3: gate_up_proj.T)
    mlp_out     blocks.L.mlp.hook_post        W_out [d_mlp, d_model]       down_proj.T  (CETT's W_out)

Grouped-query attention: the K and V matrices as stored (one per key/value head; transformer-lens' `_W_K`), not
repeated per query head, so a converted and a natively run Llama give the same matrices. Gemma 2/3, Qwen 2/3,
Mistral and Llama share Llama's module names.

OLMo 2 has no normalised attention or MLP input (its q/k/v and gate/up projections read the residual stream itself,
so an edit there would also change the residual stream): the census and CETT studies run on it (they edit only
mlp.hook_post), the method comparison refuses it. Encoders (BERT) have no next-token loss and are refused.
"""

from __future__ import annotations

from pathlib import Path

import torch

from interp.errors import ConfigError
from interp.models.native import NativeModel

PROJECTIONS = ("qkv", "attn_out", "mlp_in", "mlp_out")
INPUT_HOOKS = ("ln1.hook_normalized", "attn.hook_z", "ln2.hook_normalized", "mlp.hook_post")  # per PROJECTIONS


def n_layers(model: torch.nn.Module) -> int:
    """Number of blocks (transformer-lens and NativeModel both say it in `cfg.n_layers`)."""
    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(cfg, "n_layers"):
        raise ConfigError(f"{type(model).__name__} is neither a transformer-lens model nor a natively run Hugging "
                          "Face decoder", hint="load it with interp.models.load (a suite, an HF folder, a run folder)")
    return int(cfg.n_layers)


def consumer_matrix(model: torch.nn.Module, layer: int, proj: str) -> torch.Tensor:
    """The matrix that consumes the projection's input, as [in, out] (rows = input channels)."""
    if proj not in PROJECTIONS:
        raise ValueError(f"unknown projection {proj!r}; one of {PROJECTIONS}")
    if isinstance(model, NativeModel):
        return _native_matrix(model, layer, proj)
    if not hasattr(model, "blocks"):
        n_layers(model)  # raises the one-line ConfigError
    return _tl_matrix(model, layer, proj)


def mlp_out_matrix(model: torch.nn.Module, layer: int) -> torch.Tensor:
    """CETT's W_out [d_mlp, d_model]: neuron i writes a_i · W_out[i, :]."""
    return consumer_matrix(model, layer, "mlp_out")


def _tl_matrix(model, layer: int, proj: str) -> torch.Tensor:
    b = model.blocks[layer]
    if proj == "qkv":
        mats = (b.attn.W_Q, getattr(b.attn, "_W_K", b.attn.W_K), getattr(b.attn, "_W_V", b.attn.W_V))
        return torch.cat([w.permute(1, 0, 2).reshape(w.shape[1], -1) for w in mats], dim=1)
    if proj == "attn_out":
        return b.attn.W_O.reshape(-1, b.attn.W_O.shape[-1])
    if proj == "mlp_in":
        gate = getattr(b.mlp, "W_gate", None)
        return b.mlp.W_in if gate is None else torch.cat([gate, b.mlp.W_in], dim=1)
    return b.mlp.W_out


def _native_matrix(model: NativeModel, layer: int, proj: str) -> torch.Tensor:
    if model.spec.encoder:
        raise ConfigError(f"{model.cfg.architecture} is an encoder: the sparsity analysis measures next-token loss",
                          hint="use a decoder (Llama, Mistral, Qwen2/3, Phi-3, Gemma 2/3)")
    block = model.hf.get_submodule(model.aliases[f"blocks.{layer}.hook_resid_pre"][0])
    attn, mlp = block.self_attn, block.mlp
    if proj == "qkv":
        if hasattr(attn, "qkv_proj"):
            return attn.qkv_proj.weight.T
        return torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight], dim=0).T
    if proj == "attn_out":
        return attn.o_proj.weight.T
    if proj == "mlp_in":
        if hasattr(mlp, "gate_up_proj"):
            return mlp.gate_up_proj.weight.T
        return torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight], dim=0).T
    return mlp.down_proj.weight.T


def activation_name(model: torch.nn.Module) -> str:
    """The MLP's activation function ("relu", "silu", "gelu_pytorch_tanh", ...; "" when unknown)."""
    if isinstance(model, NativeModel):
        text = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        return str(getattr(text, "hidden_activation", None) or getattr(text, "hidden_act", "") or "")
    return str(getattr(getattr(model, "cfg", None), "act_fn", "") or "")


def missing_input_hooks(model_type: str) -> list[str]:
    """The projection-input hooks a natively run `model_type` lacks (empty: every projection can be edited)."""
    from interp.models.aliases import ARCHITECTURES

    have = {suffix for suffix, _, _ in ARCHITECTURES[model_type].block_hooks}
    return [h for h in INPUT_HOOKS if h not in have]


def refuse_unsupported(name: str, *, methods: bool) -> None:
    """Before any slow work: refuse an encoder, and (methods=True) a decoder without normalised projection
    inputs (OLMo 2), in one line. `name` is the model as the config names it; only local Hugging Face folders and
    run folders are read (config.json), everything else is left to the loader."""
    kind = _folder_model_type(name)
    if kind is None:
        return
    from interp.models.aliases import ARCHITECTURES

    if ARCHITECTURES[kind].encoder:
        raise ConfigError(f"{name} is a {kind} encoder: the sparsity analysis measures next-token loss",
                          hint="use a decoder (Llama, Mistral, Qwen2/3, Phi-3, Gemma 2/3)")
    missing = missing_input_hooks(kind)
    if methods and missing:
        raise ConfigError(f"{name} ({kind}) has no {' / '.join(missing)}: its q/k/v and gate/up projections read "
                          "the residual stream itself, so TEAL/WINA/R-Sparse cannot sparsify their inputs alone",
                          hint="compare the methods on another model (model=...); its checkpoints can still be "
                               "swept in suites (census and CETT edit mlp.hook_post only)")


def _folder_model_type(name: str) -> str | None:
    """The natively run model_type of a local HF folder or run folder (its last checkpoint), else None."""
    from interp.models.checkpoint_dirs import checkpoint_folder, is_checkpoint_dir
    from interp.models.native import native_model_type

    path = Path(name)
    if is_checkpoint_dir(path):
        path = checkpoint_folder(path, None)
    if not (path / "config.json").is_file():
        return None
    try:
        return native_model_type(path)
    except (ValueError, OSError):  # an unreadable config.json: the loader says why
        return None
