"""Your own model from Python code: `--model pkg.module:factory` and `load("pkg.module:factory")`.

The factory is called without arguments and returns a `torch.nn.Module` and its tokenizer, either as a pair
`(model, tokenizer)` or as a model with a `.tokenizer` attribute. A Hugging Face model of an architecture in
`interp.models.aliases` is wrapped as a `NativeModel` (canonical hook names besides its module paths); any other
module keeps its module paths as hook names.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import torch

from interp.errors import ModelNotFoundError

_SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def is_factory(spec) -> bool:
    """True for `module.path:function` strings (that are not an existing file or folder)."""
    return isinstance(spec, str) and bool(_SPEC.match(spec)) and not Path(spec).exists()


def load_factory(spec: str, *, device: str = "cpu", dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """Import `module.path`, call `function()` and turn its result into a hookable model with a tokenizer."""
    module_name, function = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ModelNotFoundError(f"cannot import {module_name} for model {spec} ({type(e).__name__}: {e})",
                                 hint="put the module's folder on PYTHONPATH (or install its package)") from None
    factory = getattr(module, function, None)
    if not callable(factory):
        raise ModelNotFoundError(f"{module_name} has no function {function}",
                                 hint="name a function that returns (model, tokenizer)")
    model = as_model(factory(), name=spec)
    if str(device) != "cpu":
        model = model.to(device)
    return model if dtype == torch.float32 else model.to(dtype)


def as_model(result, tokenizer=None, name: str | None = None) -> torch.nn.Module:
    """A factory's result (`model` or `(model, tokenizer)`) as a model that carries its tokenizer."""
    from interp.models.aliases import ARCHITECTURES
    from interp.models.native import NativeModel

    model, tok = result if isinstance(result, tuple) and len(result) == 2 else (result, None)
    if not isinstance(model, torch.nn.Module):
        raise ModelNotFoundError(f"model {name} is a {type(model).__name__}, not a torch.nn.Module",
                                 hint="return (model, tokenizer) from the factory")
    tok = tok if tok is not None else tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) in ARCHITECTURES and hasattr(model, "base_model"):
        return NativeModel(model.eval(), tok, name=name)
    if tok is not None and getattr(model, "tokenizer", None) is None:
        model.tokenizer = tok  # plain modules keep their module paths; the tokenizer rides along
    return model.eval()
