"""Capture activations at hook points: glob patterns -> hook names -> tensors.

Hook names are transformer-lens names for HookedTransformers (`blocks.2.hook_resid_post`) and module paths for
any other nn.Module (`layers.1`, `net.0`). The forward pass runs under inference_mode, skips the unembedding and
stops as soon as every requested hook has fired.

Patterns are globs over dotted components: `*` matches exactly one component (`blocks.*.hook_resid_post`, and
`encoder.layer.*.output` does not reach into `encoder.layer.3.attention.output`), `**` matches any number of
components, none included (`**.output` is every `output` module at any depth), and `?` / `[...]` work as in
fnmatch inside one component.
"""

from __future__ import annotations

import difflib
import fnmatch
import sys
import types
from collections.abc import Sequence

import torch

from interp.errors import HookNotFoundError
from interp.inputs import Batch, module_forward
from interp.models import is_transformer
from interp.models.native import NativeModel
from interp.positions import Positions

# transformer-lens hooks laid out [batch, head, query_pos, key_pos]; rows of a cache are query positions.
HEAD_FIRST_HOOKS = ("hook_pattern", "hook_attn_scores")


class _StopForward(Exception):
    """Raised inside the last hook to end the forward pass early."""


def hook_names(model: torch.nn.Module) -> list[str]:
    """Every hook point of the model, in the order the forward pass reaches them (modules: registration order);
    for a native Hugging Face model the canonical aliases (`blocks.0.hook_resid_post`) come before the module
    paths (`model.layers.0.mlp`)."""
    if is_transformer(model):
        return list(model.hook_dict.keys())
    if isinstance(model, NativeModel):
        return model.hook_names()
    return [name for name, _ in model.named_modules() if name]


def glob_match(pattern: str, name: str) -> bool:
    """Whether a dotted hook name matches a pattern: `*` is one component, `**` zero or more components.

    Matching runs component by component (fnmatch within a component), so a `*` never crosses a dot; the
    states are the pattern positions reachable so far (linear in the name, whatever the number of `**`).
    """
    pat = pattern.split(".")

    def closure(states: set[int]) -> set[int]:
        out, todo = set(states), list(states)
        while todo:
            i = todo.pop()
            if i < len(pat) and pat[i] == "**" and i + 1 not in out:
                out.add(i + 1)
                todo.append(i + 1)
        return out

    states = closure({0})
    for part in name.split("."):
        step: set[int] = set()
        for i in states:
            if i < len(pat) and (pat[i] == "**" or fnmatch.fnmatchcase(part, pat[i])):
                step.add(i if pat[i] == "**" else i + 1)
        states = closure(step)
        if not states:
            return False
    return len(pat) in states


def resolve_hooks(model: torch.nn.Module, patterns: str | Sequence[str]) -> list[str]:
    """Expand glob patterns (see `glob_match`) to hook names, in model order; an unmatched pattern names the
    closest hooks."""
    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns:
        raise HookNotFoundError("no hook patterns given", hint="name at least one hook, e.g. blocks.*.hook_resid_post")
    available = hook_names(model)
    chosen: set[str] = set()
    for pattern in patterns:
        hits = [n for n in available if glob_match(pattern, n)]
        if not hits:
            close = difflib.get_close_matches(pattern, available, n=5, cutoff=0.3)
            raise HookNotFoundError(
                f"hook pattern '{pattern}' matches no hook point of {type(model).__name__}"
                + (f"; closest: {', '.join(close)}" if close else ""),
                hint="list them with interp.capture.hook_names(model) (globs: * is one component, ** any number)",
            )
        chosen.update(hits)
    return [n for n in available if n in chosen]


class Capturer:
    """Reusable capture of fixed hooks: `capturer(inputs) -> {hook: tensor}`; used by notebooks and extraction."""

    def __init__(self, model: torch.nn.Module, hooks: str | Sequence[str], positions=None,
                 dtype: torch.dtype | None = None, stop_early: bool = True, flatten: bool = False):
        self.model = model
        self.names = resolve_hooks(model, hooks)
        self.positions = Positions.parse(positions)
        self.dtype = dtype
        self.stop_early = stop_early
        self.flatten = flatten  # rows [n_tokens, ...] even for positions "all" (what caches store)
        self.transformer = is_transformer(model)

    def _forward(self, batch: Batch, store: dict[str, torch.Tensor]) -> None:
        remaining = set(self.names)

        def grab(name: str, value: torch.Tensor) -> None:
            if isinstance(value, tuple):
                value = value[0]
            remaining.discard(name)
            last = self.stop_early and not remaining
            # a plain module may overwrite this output in place later in the forward (ReLU(inplace=True)):
            # keep a copy unless the forward stops right here (transformer-lens hook outputs are not reused so)
            store[name] = value.detach() if last or self.transformer else value.detach().clone()
            if last:
                raise _StopForward

        try:
            if self.transformer:
                self._transformer_forward(batch, grab)
            else:
                if isinstance(self.model, NativeModel):
                    handles = [self.model.attach(n, lambda v, n=n: grab(n, v)) for n in self.names]
                else:
                    modules = dict(self.model.named_modules())
                    handles = [modules[n].register_forward_hook(lambda m, i, o, n=n: grab(n, o)) for n in self.names]
                try:
                    module_forward(self.model, batch)
                finally:
                    for h in handles:
                        h.remove()
        except _StopForward:
            pass
        missing = [n for n in self.names if n not in store]
        if missing:
            raise HookNotFoundError(f"hooks never fired during the forward pass: {', '.join(missing)}",
                                    hint="these modules are not called by forward(); pick others")

    def _transformer_forward(self, batch: Batch, grab) -> None:
        """A HookedTransformer forward with hooks; the mask goes in as its `attention_mask` (transformer-lens
        then offsets the positions of left-padded sequences itself)."""
        hooks = [(n, lambda x, hook: grab(hook.name, x)) for n in self.names]
        kwargs = batch.segment_kwargs(self.model, type(self.model).__name__)
        if batch.padded:
            kwargs["attention_mask"] = batch.attention_mask.long()
        with self.model.hooks(fwd_hooks=hooks):
            self.model(batch.inputs, return_type=None, **kwargs)

    @torch.inference_mode()
    def __call__(self, inputs, attention_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Activations of one batch: `inputs` in any form `Batch.of` takes. With an attention mask the result is
        rows `[n_real_tokens, ...]` (padding dropped), whatever the position selector."""
        batch = inputs if isinstance(inputs, Batch) else Batch.of(inputs, attention_mask=attention_mask)
        store: dict[str, torch.Tensor] = {}
        self._forward(batch, store)
        mask = batch.attention_mask
        out = {}
        for name in self.names:
            x = store[name]
            rows = self.positions.kind != "all" or self.flatten or mask is not None
            if rows and self.transformer and name.endswith(HEAD_FIRST_HOOKS):
                x = x.transpose(1, 2)  # [batch, head, q, k] -> [batch, q, head, k]: rows are query positions
            if rows:
                x = self.positions.select(x, mask)
            out[name] = x.to(self.dtype) if self.dtype is not None else x
        return out


def capture(model: torch.nn.Module, inputs=None, hooks: str | Sequence[str] = "blocks.*.hook_resid_post",
            positions=None, dtype: torch.dtype | None = None, batch_size: int | None = None,
            stop_early: bool = True, *, input_ids=None, attention_mask=None,
            token_type_ids=None) -> dict[str, torch.Tensor]:
    """Activations at `hooks` for `inputs`: token ids `[batch, pos]`, a tokenizer's output (dict or BatchEncoding
    with `input_ids` and `attention_mask`, and for sentence pairs `token_type_ids`), `input_ids=` /
    `attention_mask=` / `token_type_ids=` keywords, or any input of a plain module.

    Without a position selector or mask, tensors are `[batch, pos, ...]` (the module's output as is for
    nn.Modules); with a selector (`"drop:1"`, `"last"`, a bool mask) or an attention mask they are rows
    `[n_tokens, ...]` in (sequence, position) order, padded positions left out (selectors then count real tokens
    only). `batch_size` splits the inputs along dim 0 and concatenates, to bound memory.
    """
    cap = Capturer(model, hooks, positions=positions, dtype=dtype, stop_early=stop_early)
    batch = Batch.of(inputs, input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
    if batch_size is None or len(batch) <= batch_size:
        return cap(batch)
    if cap.positions.kind == "mask":
        raise HookNotFoundError("batch_size with a mask selector is not supported",
                                hint="apply the mask after capture or drop batch_size")
    parts: dict[str, list[torch.Tensor]] = {n: [] for n in cap.names}
    for start in range(0, len(batch), batch_size):
        for name, value in cap(batch[start: start + batch_size]).items():
            parts[name].append(value)
    return {name: torch.cat(chunks) for name, chunks in parts.items()}


def layer_of(hook: str) -> int | None:
    """The block index in a TL hook name (`blocks.3.hook_resid_post` -> 3), None for embed/final hooks."""
    parts = hook.split(".")
    if len(parts) > 1 and parts[0] == "blocks" and parts[1].isdigit():
        return int(parts[1])
    return None


class _CallableModule(types.ModuleType):
    """`interp.capture(...)` calls `capture` even after `import interp.capture` has bound the package attribute to
    this module (Python's import system does that; the function and its module share the name)."""

    def __call__(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        return capture(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
