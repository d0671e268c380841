"""One way to get a hookable model, whatever its origin.

    load("toy-pythia-4l", step=512)   embedded suite (data/models) -> HookedTransformer
    load("path/to/hf_folder")         local Hugging Face folder: GPT-NeoX, GPT-2, Llama, GPT-Neo -> HookedTransformer;
                                      Mistral, Qwen2/3, Gemma 2/3, Phi-3, OLMo 2, BERT -> NativeModel (the HF
                                      model with canonical transformer-lens hook names, see aliases.py)
    load("pkg.module:factory")        factory() -> (model, tokenizer) or a model with .tokenizer
    load("pythia-70m", step=1000)     transformer-lens name (needs a reachable hub)
    load(my_module)                   any torch.nn.Module, returned as is (hook names are module paths)
    load("path/to/qwen3", backend="transformer_lens")
                                      a natively run folder converted to a HookedTransformer (Mistral, Qwen2/3,
                                      Phi-3; see tl_convert.py), for methods that read transformer-lens weights

transformer-lens stays behind this package: a move to TransformerBridge changes these modules only.
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path

import torch

from interp.errors import ConfigError, InterpError, ModelNotFoundError
from interp.models.checkpoint_dirs import is_checkpoint_dir
from interp.models.embedded import (
    DEFAULT_MODEL,
    data_dir,
    embedded_checkpoint_path,
    embedded_checkpoints,
    embedded_names,
    embedded_tokenizer_dir,
    is_embedded,
    suite_info,
)
from interp.models.factory import is_factory, load_factory
from interp.models.hf_local import (
    SUPPORTED_ARCHITECTURES,
    check_safetensors,
    folder_architecture,
    is_hf_folder,
    load_hf_folder,
    load_hf_tokenizer,
)
from interp.models.hub import hub_checkpoints, load_hub_model, official_name
from interp.models.native import load_native, native_model_type
from interp.models.tl_convert import as_transformer_lens

__all__ = [
    "DEFAULT_MODEL", "load", "checkpoints", "checkpoint_path", "embedded_names", "load_tokenizer", "model_id",
    "suite_info", "data_dir", "is_transformer", "resolved_step", "input_device", "native_types", "as_transformer_lens",
    "BACKENDS",
]
BACKENDS = ("auto", "transformer_lens")

WEIGHT_DTYPES = _DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float64": torch.float64,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def _dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ModelNotFoundError(f"unknown dtype '{dtype}'", hint=f"use one of {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def _unknown(name: str) -> ModelNotFoundError:
    names = embedded_names()
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.4)
    suggestion = f" Did you mean {', '.join(close)}?" if close else ""
    return ModelNotFoundError(
        f"unknown model '{name}'.{suggestion} Embedded: {', '.join(names) or 'none'}",
        hint="pass an embedded name, a local Hugging Face folder (with config.json), module.path:factory, or a "
             "transformer-lens name such as pythia-70m",
    )


def load(model: str | Path | torch.nn.Module = DEFAULT_MODEL, step: int | None = None, *, device: str = "cpu",
         dtype: torch.dtype | str = torch.float32, processing: bool = False, device_map: str | dict | None = None,
         max_memory: dict | None = None, backend: str = "auto"):
    """A hookable model: HookedTransformer for names and converted folders, NativeModel for the other supported
    folders, the factory's model for `module:function`, the module itself for an nn.Module.

    `dtype` is the weights' dtype; `device_map` / `max_memory` (natively run folders only) place the model with
    accelerate, offloading what does not fit (see `native.load_native`). backend="transformer_lens" returns a
    HookedTransformer whatever the folder (natively run architectures converted by `as_transformer_lens`, the others
    refused in one line).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}", hint=f"one of {', '.join(BACKENDS)}")
    if backend == "transformer_lens":
        if device_map is not None or max_memory is not None:
            raise ConfigError("a device map applies to natively run models, not to transformer-lens conversions",
                              hint="drop --device-map, or use backend='auto'")
        return as_transformer_lens(load(model, step, dtype=dtype, processing=processing), device=device, dtype=dtype)
    if isinstance(model, torch.nn.Module):
        return model
    dt = _dtype(dtype)
    name = str(model)
    placed = device_map is not None or max_memory is not None
    if placed and not (is_hf_folder(name) and not _converted(Path(name))):
        raise ConfigError(f"a device map applies to natively run Hugging Face folders, not to {name}",
                          hint=f"model types: {', '.join(native_types())}; or drop --device-map")
    if is_embedded(name) and not _native_run(name):
        path = embedded_checkpoint_path(name, step)
        tok = load_hf_tokenizer(path) or load_hf_tokenizer(embedded_tokenizer_dir(name))
        return load_hf_folder(path, tokenizer=tok, device=device, dtype=dt, name=f"{name}@step{path.name[4:]}",
                              processing=processing)
    if is_checkpoint_dir(name):
        from interp.models.checkpoint_dirs import checkpoint_folder, tokenizer_folder

        path = checkpoint_folder(name, step)
        model = _load_folder(path, device, dt, processing)
        tok_dir = tokenizer_folder(name)
        if getattr(model, "tokenizer", None) is None and tok_dir is not None:
            model.tokenizer = load_hf_tokenizer(tok_dir)
        _tag(model, f"{Path(name).name}@step{_step_of(path)}")
        return model
    if is_hf_folder(name):
        if step is not None:
            raise ModelNotFoundError(f"a local folder has no training steps (got step={step})",
                                     hint="pass the folder of that checkpoint instead")
        if placed:
            check_safetensors(Path(name).resolve())
            return load_native(name, dtype=dt, device_map=device_map or "auto", max_memory=max_memory)
        return _load_folder(Path(name), device, dt, processing)
    if Path(name).exists():
        raise ModelNotFoundError(f"{name} exists but has no config.json",
                                 hint="point at a folder written by save_pretrained")
    if is_factory(name):
        return load_factory(name, device=device, dtype=dt)
    if official_name(name) is not None:
        return load_hub_model(name, step, device=device, dtype=dt, processing=processing)
    raise _unknown(name)


def _step_of(path: Path) -> int:
    from interp.models.checkpoint_dirs import _STEP

    return int(_STEP.match(path.name).group(1))


def _tag(model: torch.nn.Module, name: str) -> None:
    """Name a loaded checkpoint `run@stepN`, so provenance (`resolved_step`) says which step ran."""
    cfg = getattr(model, "cfg", None)
    if cfg is not None and hasattr(cfg, "model_name"):
        cfg.model_name = name


def _native_run(name: str) -> bool:
    """A run folder whose checkpoints run natively: loaded as a run folder even when it carries a suite.json (which
    `is_embedded` also accepts from a path outside data/models; the embedded loader converts to transformer-lens)."""
    if not is_checkpoint_dir(name):
        return False
    from interp.models.checkpoint_dirs import checkpoint_folder

    return not _converted(checkpoint_folder(name, None))


def _converted(path: Path) -> bool:
    """Whether a folder loads as a HookedTransformer (converted, or refused there as unknown) rather than natively."""
    return folder_architecture(path) in SUPPORTED_ARCHITECTURES or native_model_type(path) is None


def _load_folder(path: Path, device: str, dtype: torch.dtype, processing: bool):
    """Converted to a HookedTransformer where interp converts the architecture, else run natively."""
    if _converted(path):
        return load_hf_folder(path, device=device, dtype=dtype, processing=processing)  # refuses the unknown
    if processing:
        raise ModelNotFoundError(f"{path} runs natively (not converted), so transformer-lens weight processing "
                                 "does not apply", hint="load it with processing=False")
    check_safetensors(path.resolve())
    return load_native(path, device=device, dtype=dtype)


def checkpoints(model: str = DEFAULT_MODEL) -> list[int]:
    """Training steps with a checkpoint: embedded suites from suite.json, Pythia-style names from transformer-lens."""
    if is_embedded(model):
        return embedded_checkpoints(model)
    if is_checkpoint_dir(model):
        from interp.models.checkpoint_dirs import step_folders

        return list(step_folders(model))
    if official_name(model) is not None:
        return hub_checkpoints(model)
    raise _unknown(model)


def checkpoint_path(model: str = DEFAULT_MODEL, step: int | None = None) -> Path:
    """Folder of an embedded checkpoint (the final one when step is None)."""
    if not is_embedded(model):
        raise ModelNotFoundError(f"'{model}' is not an embedded suite, so it has no local checkpoint folders",
                                 hint=f"embedded suites: {', '.join(embedded_names()) or 'none'}")
    return embedded_checkpoint_path(model, step)


def load_tokenizer(model: str | Path = DEFAULT_MODEL):
    """The tokenizer of an embedded suite, a local model or tokenizer folder, a factory, or a transformer-lens model
    (hub)."""
    name = str(model)
    if is_checkpoint_dir(name):
        from interp.models.checkpoint_dirs import tokenizer_folder

        found = tokenizer_folder(name)
        if found is None:
            raise ModelNotFoundError(f"no tokenizer in {name} or its checkpoints",
                                     hint="save the tokenizer into the run folder (tokenizer.save_pretrained)")
        return load_hf_tokenizer(found)
    # an embedded suite, a model folder, or a folder holding only a tokenizer (tokenizer.save_pretrained)
    folder = embedded_tokenizer_dir(name) if is_embedded(name) else Path(name) if is_hf_folder(name) or Path(
        name).is_dir() else None
    if folder is not None:
        tok = load_hf_tokenizer(folder)
        if tok is None:
            raise ModelNotFoundError(f"{folder} has no tokenizer files",
                                     hint="save the tokenizer beside the model (data/tokenizer for the suites)")
        return tok
    if is_factory(name):
        tok = getattr(load_factory(name), "tokenizer", None)
        if tok is None:
            raise ModelNotFoundError(f"the factory {name} returns no tokenizer", hint="return (model, tokenizer)")
        return tok
    if official_name(name) is not None:
        return load_hub_model(name).tokenizer
    raise _unknown(name)


def native_types() -> list[str]:
    """The Hugging Face model types interp runs natively (with canonical hook names)."""
    from interp.models.aliases import ARCHITECTURES

    return list(ARCHITECTURES)


def input_device(model: torch.nn.Module) -> torch.device:
    """Where a model's inputs go: `model.input_device` where it says (a NativeModel, device maps included), else
    the device of its first parameter (cpu for a module without parameters)."""
    placed = getattr(model, "input_device", None)
    if placed is not None:
        return torch.device(placed)
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def is_transformer(model: torch.nn.Module) -> bool:
    """True for transformer-lens HookedTransformers (hook names are TL names, inputs are token ids)."""
    # a HookedTransformer instance implies transformer-lens is imported: checking sys.modules spares a plain
    # nn.Module run the 1-2 s import (and works without transformer-lens installed)
    tl = sys.modules.get("transformer_lens")
    return tl is not None and isinstance(model, tl.HookedTransformer)


def model_id(model: torch.nn.Module) -> str:
    """A human-readable id for manifests: the TL model name, else the module's class."""
    cfg = getattr(model, "cfg", None)
    if cfg is not None and getattr(cfg, "model_name", None):
        return str(cfg.model_name)
    return type(model).__name__


def resolved_step(name: str | Path | None, step: int | None = None,
                  loaded: torch.nn.Module | None = None) -> int | None:
    """The training step a result really came from, for provenance (configs say None or -1 for "the final one").

    The step tag of the loaded model's name (`suite@stepN`) wins, then an explicit step >= 0, then the final
    checkpoint of the suite `name`; None when there is no step to name (a local folder, a user's module).
    """
    tag = re.search(r"@step(\d+)$", model_id(loaded)) if loaded is not None else None
    if tag:
        return int(tag.group(1))
    if step is not None and int(step) >= 0:
        return int(step)
    if name is None:
        return None
    try:
        steps = checkpoints(str(name))
    except InterpError:  # not a suite (local folder), or the hub listing is unreachable
        return None
    return steps[-1] if steps else None
