"""Natively run Hugging Face decoders converted to a transformer-lens HookedTransformer, for methods that need one.

interp runs Mistral, Qwen2, Qwen3 and Phi-3 folders natively (`native.NativeModel`: the HF model with canonical
hook names). A few methods read transformer-lens weights directly (per-head W_V / W_O, norm gains, the MLP module
of a block); `as_transformer_lens` hands them a HookedTransformer with the same weights. Only architectures whose
converted logits equal the HF model's (float32, tiny random configs with every weight randomised; see
tests/analyses/test_obsprop_modern.py) are converted; the others are refused in one line that says why.

Weights stay unprocessed (no norm folding, no centering), so every activation equals the HF model's.
"""

from __future__ import annotations

from pathlib import Path

import torch

from interp.errors import ModelNotFoundError

# HF architecture -> short name; conversion tested to match the HF logits
CONVERTIBLE = {"MistralForCausalLM": "Mistral", "Qwen2ForCausalLM": "Qwen2", "Qwen3ForCausalLM": "Qwen3",
               "Phi3ForCausalLM": "Phi-3", "LlamaForCausalLM": "Llama"}

_HUB_NAMES_ONLY = "transformer-lens 3.9 builds its config from official hub names only, not from a config.json"
NOT_CONVERTIBLE = {
    "Gemma2ForCausalLM": _HUB_NAMES_ONLY, "Gemma3ForCausalLM": _HUB_NAMES_ONLY, "Olmo2ForCausalLM": _HUB_NAMES_ONLY,
    "BertModel": "it is an encoder (a HookedTransformer is a causal decoder)",
}


def _rope_type(config) -> str | None:
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    return rope.get("rope_type") or rope.get("type") if isinstance(rope, dict) else None


def conversion_blocker(config, arch: str) -> str | None:
    """Why a model of HF class `arch` with `config` would not convert with equal logits (None: it converts).

    Beyond the architecture: transformer-lens' Qwen2/Qwen3 converters ignore `use_sliding_window`, only Llama's
    applies a RoPE scaling (llama3), and Phi-3's assumes full rotary dimensions.
    """
    if arch not in CONVERTIBLE:
        return NOT_CONVERTIBLE.get(arch, "transformer-lens has no converter for it")
    if getattr(config, "use_sliding_window", False) and arch in ("Qwen2ForCausalLM", "Qwen3ForCausalLM"):
        return "it uses sliding-window attention, which transformer-lens' Qwen converter ignores"
    rope = _rope_type(config)
    if rope not in (None, "default") and not (arch == "LlamaForCausalLM" and rope == "llama3"):
        return f"its RoPE scaling {rope!r} is not applied by transformer-lens' converter"
    if arch == "Phi3ForCausalLM" and float(getattr(config, "partial_rotary_factor", 1.0) or 1.0) != 1.0:
        return "partial rotary embeddings, which transformer-lens' Phi-3 converter does not apply"
    return None


def convertible_hint() -> str:
    return (f"transformer-lens weights are available for {', '.join(CONVERTIBLE.values())} folders, and for GPT-2, "
            "GPT-NeoX/Pythia, GPT-Neo and the embedded suites (loaded converted)")


def as_transformer_lens(model: str | Path | torch.nn.Module, step: int | None = None, *, device: str = "cpu",
                        dtype: torch.dtype | str = torch.float32):
    """A HookedTransformer for `model`: a name or folder (loaded first with `interp.models.load`), a NativeModel
    (converted), or a HookedTransformer (returned as is).

    A converted model carries `converted_from` (the HF class name) so results can say where their weights came from.
    Raises ModelNotFoundError, in one line, for an architecture that does not convert (see `conversion_blocker`).
    """
    from interp.models import _dtype, is_transformer, load
    from interp.models.hf_local import hooked_from_hf
    from interp.models.native import NativeModel

    dt = _dtype(dtype)
    if isinstance(model, (str, Path)):
        model = load(model, step, device="cpu", dtype=dt)
    if is_transformer(model):
        return model.to(device) if str(device) != "cpu" else model
    if not isinstance(model, NativeModel):
        raise ModelNotFoundError(f"{type(model).__name__} is neither a transformer-lens model nor a Hugging Face "
                                 "model interp runs natively, so it cannot be converted to transformer-lens",
                                 hint=convertible_hint())
    hf = model.hf
    arch = type(hf).__name__
    why = conversion_blocker(hf.config, arch)
    if why is None and getattr(hf, "hf_device_map", None):
        why = "it is placed with a device map (convert a model loaded on one device)"
    if why is not None:
        raise ModelNotFoundError(f"{model.cfg.model_name} ({arch}) cannot be converted to transformer-lens: {why}",
                                 hint=convertible_hint())
    doc = hf.config.to_dict()
    doc["architectures"] = [arch]  # a model built in memory (from_config) has none
    out = hooked_from_hf(hf, doc, tokenizer=model.tokenizer, device=device, dtype=dt, name=model.cfg.model_name,
                         where=f"{model.cfg.model_name} ({arch})")
    out.converted_from = arch
    return out
