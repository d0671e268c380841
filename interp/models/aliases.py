"""Canonical transformer-lens hook names for Hugging Face architectures run natively (not converted).

One small table per architecture says where each canonical hook lives in the Hugging Face module tree: a module
path inside a block and whether the hook is that module's input ("in", a forward pre-hook) or its output ("out",
a forward hook). The names mean what they mean in transformer-lens:

    blocks.L.hook_resid_pre        the block's input (= hidden_states[L] of output_hidden_states)
    blocks.L.ln1.hook_normalized   the attention's normalised input (pre-norm blocks only)
    blocks.L.attn.hook_z           the input of the attention's output projection (`self_attn.o_proj`): the heads'
                                   mixed values, flattened to [batch, pos, n_heads * d_head] as o_proj consumes
                                   them (transformer-lens' hook_z is [batch, pos, n_heads, d_head]; its
                                   .flatten(-2) is this, head-major)
    blocks.L.hook_attn_out         what the attention adds to the residual stream (after the post-attention norm
                                   in post-norm blocks such as Gemma 2/3 and OLMo 2)
    blocks.L.hook_resid_mid        the residual stream between attention and MLP, where a module boundary has it
    blocks.L.ln2.hook_normalized   the MLP's normalised input
    blocks.L.mlp.hook_post         the input of the MLP's down projection (after the activation / gating)
    blocks.L.hook_mlp_out          what the MLP adds to the residual stream
    blocks.L.hook_resid_post       the block's output (pre-norm models); for BERT's post-norm blocks, as in
                                   transformer-lens' HookedEncoder, the sum before the output LayerNorm, whose
                                   output is blocks.L.ln2.hook_normalized (= hidden_states[L + 1])
    ln_final.hook_normalized       the final norm's output (decoders)

Paths are relative to the base model (`model.base_model`: a LlamaModel inside LlamaForCausalLM, a BertModel), so
the same table serves a bare base model and every head class around it.
"""

from __future__ import annotations

from dataclasses import dataclass

# (canonical suffix, module path inside the block ("" = the block), "in" | "out"), in forward order
_LLAMA_LIKE = (
    ("hook_resid_pre", "", "in"), ("ln1.hook_normalized", "input_layernorm", "out"),
    ("attn.hook_z", "self_attn.o_proj", "in"), ("hook_attn_out", "self_attn", "out"),
    ("hook_resid_mid", "post_attention_layernorm", "in"), ("ln2.hook_normalized", "post_attention_layernorm", "out"),
    ("mlp.hook_post", "mlp.down_proj", "in"), ("hook_mlp_out", "mlp", "out"), ("hook_resid_post", "", "out"),
)
_PHI3 = (  # the dropouts (identity in eval) are exactly what is added to the residual stream
    ("hook_resid_pre", "", "in"), ("ln1.hook_normalized", "input_layernorm", "out"),
    ("attn.hook_z", "self_attn.o_proj", "in"), ("hook_attn_out", "resid_attn_dropout", "out"),
    ("hook_resid_mid", "post_attention_layernorm", "in"), ("ln2.hook_normalized", "post_attention_layernorm", "out"),
    ("mlp.hook_post", "mlp.down_proj", "in"), ("hook_mlp_out", "resid_mlp_dropout", "out"),
    ("hook_resid_post", "", "out"),
)
_GEMMA = (  # pre- and post-norms around attention and MLP: the post-norms' outputs are added to the residual
    ("hook_resid_pre", "", "in"), ("ln1.hook_normalized", "input_layernorm", "out"),
    ("attn.hook_z", "self_attn.o_proj", "in"), ("hook_attn_out", "post_attention_layernorm", "out"),
    ("hook_resid_mid", "pre_feedforward_layernorm", "in"), ("ln2.hook_normalized", "pre_feedforward_layernorm", "out"),
    ("mlp.hook_post", "mlp.down_proj", "in"), ("hook_mlp_out", "post_feedforward_layernorm", "out"),
    ("hook_resid_post", "", "out"),
)
_OLMO2 = (  # post-norms only: no normalised attention/MLP input; the MLP's input is the residual stream itself
    ("hook_resid_pre", "", "in"), ("attn.hook_z", "self_attn.o_proj", "in"),
    ("hook_attn_out", "post_attention_layernorm", "out"), ("hook_resid_mid", "mlp", "in"),
    ("mlp.hook_post", "mlp.down_proj", "in"), ("hook_mlp_out", "post_feedforward_layernorm", "out"),
    ("hook_resid_post", "", "out"),
)
_BERT = (  # post-LN blocks: LayerNorm(x + sublayer(x)); names as transformer-lens' HookedEncoder uses them
    ("hook_resid_pre", "", "in"), ("attn.hook_z", "attention.output.dense", "in"),
    ("hook_attn_out", "attention.output.dense", "out"),
    ("hook_resid_mid", "attention.output.LayerNorm", "in"),
    ("ln1.hook_normalized", "attention.output.LayerNorm", "out"),
    ("mlp.hook_post", "output.dense", "in"), ("hook_mlp_out", "output.dense", "out"),
    ("hook_resid_post", "output.LayerNorm", "in"), ("ln2.hook_normalized", "output.LayerNorm", "out"),
)


@dataclass(frozen=True)
class ArchSpec:
    """Where an architecture keeps its blocks and hooks, relative to the base model."""

    layers: str  # the ModuleList of blocks
    block_hooks: tuple[tuple[str, str, str], ...]
    final_norm: str | None = "norm"
    encoder: bool = False  # loaded with AutoModel (bidirectional; [CLS] ... [SEP] blocks) instead of a causal LM


ARCHITECTURES: dict[str, ArchSpec] = {
    "llama": ArchSpec("layers", _LLAMA_LIKE),
    "mistral": ArchSpec("layers", _LLAMA_LIKE),
    "qwen2": ArchSpec("layers", _LLAMA_LIKE),
    "qwen3": ArchSpec("layers", _LLAMA_LIKE),
    "phi3": ArchSpec("layers", _PHI3),
    "gemma2": ArchSpec("layers", _GEMMA),
    "gemma3_text": ArchSpec("layers", _GEMMA),
    "olmo2": ArchSpec("layers", _OLMO2),
    "bert": ArchSpec("encoder.layer", _BERT, final_norm=None, encoder=True),
}


def alias_table(spec: ArchSpec, n_layers: int, base: str) -> dict[str, tuple[str, str]]:
    """Canonical name -> (module path in the full model, "in" | "out"), in forward order; `base` is the base
    model's path in the full model ("" when the model is the base model)."""
    prefix = f"{base}." if base else ""
    table: dict[str, tuple[str, str]] = {}
    for layer in range(n_layers):
        block = f"{prefix}{spec.layers}.{layer}"
        for suffix, path, where in spec.block_hooks:
            table[f"blocks.{layer}.{suffix}"] = (f"{block}.{path}" if path else block, where)
    if spec.final_norm:
        table["ln_final.hook_normalized"] = (prefix + spec.final_norm, "out")
    return table
