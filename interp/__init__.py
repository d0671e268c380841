"""interp: capture activations into an on-disk cache and analyse them.

Public API (imported lazily so `import interp` stays cheap):
    interp.load_model(name, step=None)   -> HookedTransformer | NativeModel | nn.Module (folder, module:factory)
    interp.capture(model, inputs, hooks) -> dict[str, Tensor]   (inputs: token ids, or a tokenizer's padded output)
    interp.open_cache(path)              -> CacheReader
    interp.token_blocks(source, tokenizer, ctx, n_tokens) -> LongTensor[n_blocks, ctx]
    interp.browse(sae, cache, out)       -> Site (latent browser of a sparse cache; an iframe in Jupyter)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": ("interp.models", "load"),
    "capture": ("interp.capture", "capture"),
    "open_cache": ("interp.cache", "open_cache"),
    "token_blocks": ("interp.sources", "token_blocks"),
    "InterpError": ("interp.errors", "InterpError"),
    "browse": ("interp.browser", "browse"),
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'interp' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazy names too, so that tab completion offers them."""
    return sorted(set(globals()) | set(_LAZY))
