"""Local Hugging Face folders (GPT-NeoX/Pythia, GPT-2, Llama, GPT-Neo) converted offline to a HookedTransformer.

(Other architectures run natively with canonical hook names: `interp.models.native`.)

transformer-lens' `from_pretrained` only accepts official names, so this uses its lower-level pieces
(`convert_hf_model_config` reads a local config.json; `get_pretrained_state_dict` converts the weights).
Weights stay unprocessed (no LayerNorm folding or centering) so activations equal the Hugging Face model's.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from interp.errors import ModelNotFoundError
from interp.models.aliases import ARCHITECTURES

SUPPORTED_ARCHITECTURES = ("GPTNeoXForCausalLM", "GPT2LMHeadModel", "LlamaForCausalLM", "GPTNeoForCausalLM")


def quiet_transformers() -> None:
    """No per-load progress bars or info logs from transformers (the CLI has its own progress)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def is_hf_folder(path: str | Path) -> bool:
    return (Path(path) / "config.json").is_file()


def load_hf_tokenizer(path: str | Path):
    """A fast tokenizer from a folder, or None when the folder has no tokenizer files."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        return None
    return AutoTokenizer.from_pretrained(str(path))


def folder_architecture(path: str | Path) -> str:
    """The first entry of config.json's "architectures" ("?" when there is none)."""
    return (json.loads((Path(path) / "config.json").read_text()).get("architectures") or ["?"])[0]


def check_safetensors(path: Path) -> None:
    """Refuse a folder without safetensors weights: interp never unpickles .bin / .pt files."""
    if not any(path.glob("*.safetensors")):
        found = ", ".join(sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt")))
        raise ModelNotFoundError(
            f"{path} has no safetensors weights" + (f" (found {found})" if found else ""),
            hint="interp never unpickles weight files; convert them once where you trust them: "
                 "model.save_pretrained(dir, safe_serialization=True)")


def load_hf_folder(path: str | Path, *, tokenizer=None, device: str = "cpu", dtype: torch.dtype = torch.float32,
                   name: str | None = None, processing: bool = False):
    """Load `path` (a `save_pretrained` folder) as a HookedTransformer whose logits match the HF model's.

    processing=True applies transformer-lens' from_pretrained processing (LNPre, fold_ln, centering): logits
    then differ by a constant per position, log-probs agree.
    """
    from transformers import AutoModelForCausalLM

    path = Path(path).resolve()
    if not is_hf_folder(path):
        raise ModelNotFoundError(f"{path} has no config.json", hint="point at a folder written by save_pretrained")
    arch = folder_architecture(path)
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ModelNotFoundError(
            f"{path} holds a {arch}, which interp cannot convert",
            hint=f"supported: {', '.join(SUPPORTED_ARCHITECTURES)} (converted to transformer-lens) and model types "
                 f"{', '.join(ARCHITECTURES)} (run natively)")
    check_safetensors(path)
    if tokenizer is None:
        tokenizer = load_hf_tokenizer(path)
    quiet_transformers()
    hf_model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, use_safetensors=True).eval()
    doc = json.loads((path / "config.json").read_text())
    return hooked_from_hf(hf_model, doc, tokenizer=tokenizer, device=device, dtype=dtype, name=name or path.name,
                          processing=processing, where=f"{path} ({arch})", folder=path)


def hooked_from_hf(hf_model, doc: dict, *, tokenizer=None, device: str = "cpu", dtype: torch.dtype = torch.float32,
                   name: str = "model", processing: bool = False, where: str = "the model",
                   folder: Path | None = None):
    """A HookedTransformer with `hf_model`'s weights (its config as the dict `doc`, i.e. config.json).

    The weights are read in `hf_model`'s own dtype into a model built in `dtype` (so its rotary tables are computed
    in `dtype`). `folder` is the model's folder, where transformer-lens may reload the tokenizer from; without one
    (a model built in memory) it is given an empty temporary folder, since its converter takes any name that is not
    an existing path for a hub name.
    """
    import tempfile

    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens import loading_from_pretrained as loading

    cfg_dict = _tl_config(doc, hf_model.config, where)
    src_dtype = next(hf_model.parameters()).dtype
    cfg_dict.update(model_name=name, init_weights=False, device=device, dtype=dtype,
                    tokenizer_name=str(folder) if tokenizer is not None and folder else None)  # None: no hub look-up
    if processing:
        cfg_dict["normalization_type"] = "LNPre" if cfg_dict.get("normalization_type") == "LN" else \
            cfg_dict.get("normalization_type")
    try:
        cfg = HookedTransformerConfig(**cfg_dict)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
        with tempfile.TemporaryDirectory() as tmp:
            state = loading.get_pretrained_state_dict(str(folder or tmp), cfg, hf_model, dtype=src_dtype)
        model.load_and_process_state_dict(
            state, fold_ln=processing, center_writing_weights=processing, center_unembed=processing,
            fold_value_biases=processing,
        )
    except (RuntimeError, ValueError, TypeError, KeyError, AttributeError) as e:  # shapes transformer-lens lacks
        raise ModelNotFoundError(f"{where} has a configuration transformer-lens cannot convert "
                                 f"({type(e).__name__}: {str(e).splitlines()[0][:200]})",
                                 hint="load it with transformers directly and capture with interp's nn.Module "
                                      "hooks (module paths as hook names)") from None
    if model.tokenizer is not None:  # transformer-lens swapped in a BOS-adding copy: blocks follow the original
        from interp.sources import SPECIALS_ATTR, block_specials

        setattr(model.tokenizer, SPECIALS_ATTR, block_specials(tokenizer) if tokenizer is not None else ([], []))
    if str(device) != "cpu":
        model = model.to(device)
    model = model if dtype == torch.float32 else model.to(dtype, print_details=False)
    _exact_rotary_tables(model)
    return model.eval()


def _exact_rotary_tables(model) -> None:
    """Recompute each attention's rotary sin/cos tables in the model's dtype: loading the converted state dict
    leaves them rounded through float32 (3e-8 off in a float64 model), which float64 methods (obsprop, LIB) see."""
    for block in model.blocks:
        attn = block.attn
        if getattr(attn, "rotary_sin", None) is None:
            continue
        sin, cos = attn.calculate_sin_cos_rotary(model.cfg.rotary_dim, attn.rotary_sin.shape[0],
                                                 base=attn._rotary_base(), dtype=attn.rotary_sin.dtype)
        attn.rotary_sin.copy_(sin)
        attn.rotary_cos.copy_(cos)


def _tl_config(doc: dict, hf_config, where: str = "the model") -> dict:
    """transformer-lens' config for a model whose config.json is `doc`, read through a neutrally named copy and
    patched where its converter ignores the model's own values.

    The converter picks the architecture from substrings of the path ("llama", "gemma" anywhere in it) before it
    reads config.json, so the real path could override the model; and it drops GPT-NeoX's rope theta, GPT-2's
    n_inner (and needs n_ctx, which newer transformers no longer write) and Llama's explicit head_dim.
    """
    import tempfile

    from transformer_lens import loading_from_pretrained as loading

    doc = dict(doc)
    kind = getattr(hf_config, "model_type", "")
    if kind == "gpt2":
        doc.setdefault("n_ctx", hf_config.n_positions)
    with tempfile.TemporaryDirectory() as tmp:
        neutral = Path(tmp) / "model"
        neutral.mkdir()
        (neutral / "config.json").write_text(json.dumps(doc))
        try:
            cfg = loading.convert_hf_model_config(str(neutral))
        except (AttributeError, KeyError, TypeError, ValueError, NotImplementedError) as e:
            raise ModelNotFoundError(f"{where}: transformer-lens cannot read its config.json "
                                     f"({type(e).__name__}: {e})", hint="check the folder's config.json") from None
    rope = getattr(hf_config, "rope_parameters", None) or {}
    if kind == "gpt_neox":
        cfg["rotary_base"] = rope.get("rope_theta", getattr(hf_config, "rotary_emb_base", 10000))
    if kind == "gpt2" and getattr(hf_config, "n_inner", None):
        cfg["d_mlp"] = int(hf_config.n_inner)
    if kind == "llama" and getattr(hf_config, "head_dim", None):
        cfg["d_head"] = int(hf_config.head_dim)
        cfg["rotary_dim"] = int(hf_config.head_dim)
    return cfg
