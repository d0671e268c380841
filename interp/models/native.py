"""Hugging Face models run as they are, with canonical transformer-lens hook names (see `aliases`).

`NativeModel` wraps a `transformers` model: it carries the tokenizer and the facts downstream code reads from a
HookedTransformer's `cfg` (n_layers, d_model, n_ctx, d_vocab, model_name), answers to canonical names
(`blocks.3.hook_resid_post`) as well as to the model's own module paths (`model.layers.3.mlp`), and passes the
attention mask, with real-token positions, to every forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from interp.errors import HookNotFoundError, ModelNotFoundError
from interp.models.aliases import ARCHITECTURES, ArchSpec, alias_table


@dataclass
class ModelFacts:
    """The part of transformer-lens' HookedTransformerConfig that interp reads."""

    model_name: str
    n_layers: int
    d_model: int
    n_ctx: int
    d_vocab: int
    architecture: str = ""


class NativeModel(torch.nn.Module):
    """A Hugging Face model with canonical hook names; `hf` is the model itself (module paths are its own)."""

    def __init__(self, hf: torch.nn.Module, tokenizer=None, name: str | None = None):
        super().__init__()
        config = hf.config
        kind = getattr(config, "model_type", "")
        if kind not in ARCHITECTURES:
            raise ModelNotFoundError(f"{type(hf).__name__} ({kind or 'no model_type'}) has no canonical hook table",
                                     hint=f"supported model types: {', '.join(ARCHITECTURES)}; or capture with "
                                          "module paths as hook names (pass the module itself)")
        self.hf = hf
        self.tokenizer = tokenizer
        self.config = config
        self.spec: ArchSpec = ARCHITECTURES[kind]
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        self.cfg = ModelFacts(model_name=name or getattr(config, "name_or_path", "") or type(hf).__name__,
                              n_layers=int(text.num_hidden_layers), d_model=int(text.hidden_size),
                              n_ctx=int(getattr(text, "max_position_embeddings", 0) or 0) or 2**31,
                              d_vocab=int(text.vocab_size), architecture=kind)
        self._modules_by_path = dict(hf.named_modules())
        base = next(path for path, module in hf.named_modules() if module is hf.base_model)
        self.aliases = alias_table(self.spec, self.cfg.n_layers, base)
        missing = [path for path, _ in self.aliases.values() if path not in self._modules_by_path]
        if missing:
            raise ModelNotFoundError(f"{type(hf).__name__} lacks the modules its hook table names "
                                     f"({', '.join(missing[:3])})", hint="capture with module paths as hook names")

    @property
    def input_device(self) -> torch.device:
        """Where token ids go: the input embedding's device (with a device map, its entry; accelerate's hooks move
        activations between the devices and the disk from there)."""
        placed = getattr(self.hf, "hf_device_map", None)
        if placed:
            emb = next((d for name, d in placed.items() if "embed" in name), next(iter(placed.values())))
            return torch.device(f"cuda:{emb}" if isinstance(emb, int) else emb if emb not in ("disk", "meta")
                                else "cpu")
        return self.hf.get_input_embeddings().weight.device

    def hook_names(self) -> list[str]:
        """Canonical aliases in forward order, then the model's module paths."""
        return list(self.aliases) + [name for name in self._modules_by_path if name]

    def attach(self, name: str, fn) -> torch.utils.hooks.RemovableHandle:
        """Call `fn(tensor)` where hook `name` (an alias or a module path) fires; returns the removable handle."""
        path, where = self.aliases.get(name, (name, "out"))
        module = self._modules_by_path.get(path)
        if module is None:
            raise HookNotFoundError(f"{name} is not a hook point of {type(self.hf).__name__}")
        if where == "out":
            return module.register_forward_hook(lambda m, args, out: fn(out))

        def pre(m, args, kwargs):  # blocks get hidden_states positionally or by keyword
            fn(args[0] if args else kwargs.get("hidden_states", next(iter(kwargs.values()))))

        return module.register_forward_pre_hook(pre, with_kwargs=True)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None):
        """The wrapped model's forward; with a mask, positions count real tokens (left padding changes nothing);
        `token_type_ids` (sentence pairs) go to models that take them and are refused by others unless all 0."""
        from interp.inputs import Batch

        kwargs = Batch(input_ids, token_type_ids=token_type_ids).segment_kwargs(self.hf, type(self.hf).__name__)
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask.long()
            if position_ids is None:
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        if not self.spec.encoder:
            kwargs["use_cache"] = False
        return self.hf(input_ids=input_ids, **kwargs)


def native_model_type(path: str | Path) -> str | None:
    """The folder's model_type when interp runs it natively, else None."""
    import json

    kind = json.loads((Path(path) / "config.json").read_text()).get("model_type")
    return kind if kind in ARCHITECTURES else None


def load_native(path: str | Path, *, tokenizer=None, device: str = "cpu", dtype: torch.dtype = torch.float32,
                name: str | None = None, device_map: str | dict | None = None,
                max_memory: dict | None = None) -> NativeModel:
    """A local Hugging Face folder of a supported model type, loaded with transformers and wrapped.

    `dtype` is the weights' dtype. `device_map` ("auto", or a module -> device dict) and `max_memory`
    ({"cpu": "2GiB", 0: "20GiB"}) place the model with accelerate: what does not fit the caps is offloaded to the
    next device, then to a temporary folder on disk that lives as long as the model.
    """
    import tempfile

    from transformers import AutoModel, AutoModelForCausalLM

    from interp.models.hf_local import load_hf_tokenizer, quiet_transformers

    path = Path(path).resolve()
    spec = ARCHITECTURES[native_model_type(path)]
    quiet_transformers()
    cls = AutoModel if spec.encoder else AutoModelForCausalLM
    placement, offload = {}, None
    if device_map is not None:
        offload = tempfile.TemporaryDirectory(prefix="interp-offload-")
        placement = dict(device_map=device_map, max_memory=max_memory, offload_folder=offload.name)
    try:
        hf = cls.from_pretrained(str(path), dtype=dtype, use_safetensors=True, **placement)
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as e:
        raise ModelNotFoundError(f"{path}: transformers cannot load it ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:200]})", hint="check the folder's files") from None
    hf = (hf if device_map is not None else hf.to(device)).eval()
    model = NativeModel(hf, tokenizer if tokenizer is not None else load_hf_tokenizer(path), name=name or path.name)
    model._offload = offload  # removed with the model
    return model
