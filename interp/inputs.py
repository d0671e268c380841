"""Model inputs with their attention mask: token ids travel with the mask so that padded positions never reach
a capture, a cache or an analysis.

`Batch.of(inputs)` accepts what people have at hand: a `[batch, pos]` tensor of token ids, a dict or
`transformers.BatchEncoding` with `input_ids` and `attention_mask` (what a tokenizer returns with padding), or
`input_ids=` / `attention_mask=` keywords. Inputs that are not token ids (a plain module's float features) pass
through untouched, without a mask.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from interp.errors import ConfigError


@dataclass
class Batch:
    """Inputs of one forward pass: `inputs` (token ids `[batch, pos]`, or any input of a plain module) and an
    optional attention mask `[batch, pos]` (bool; True at real tokens)."""

    inputs: object
    attention_mask: torch.Tensor | None = None

    @staticmethod
    def of(inputs=None, *, input_ids=None, attention_mask=None) -> Batch:
        """Normalise the accepted input forms (see the module docstring); a mask is checked against the ids."""
        if inputs is not None and input_ids is not None:
            raise ConfigError("inputs given twice (positionally and as input_ids=)", hint="pass one of them")
        inputs = input_ids if inputs is None else inputs
        if inputs is None:
            raise ConfigError("no inputs given", hint="pass token ids, or a tokenizer's output (input_ids and "
                                                      "attention_mask)")
        if isinstance(inputs, Mapping):
            if "input_ids" not in inputs:
                raise ConfigError(f"the input mapping has no 'input_ids' (keys: {', '.join(map(str, inputs))})",
                                  hint="pass a tokenizer's output, or a dict with input_ids and attention_mask")
            if attention_mask is not None and inputs.get("attention_mask") is not None:
                raise ConfigError("attention_mask given twice (in the inputs and as attention_mask=)",
                                  hint="pass one of them")
            attention_mask = inputs.get("attention_mask") if attention_mask is None else attention_mask
            inputs = inputs["input_ids"]
            inputs = _as_ids(inputs, "input_ids")
        if attention_mask is None:
            return Batch(inputs)
        ids = _as_ids(inputs, "input_ids")
        mask = _as_ids(attention_mask, "attention_mask").to(ids.device)
        if mask.shape != ids.shape:
            raise ConfigError(f"attention_mask has shape {tuple(mask.shape)}, input_ids {tuple(ids.shape)}",
                              hint="pass the mask the tokenizer returned with these ids")
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ConfigError("attention_mask holds values other than 0 and 1", hint="1 at real tokens, 0 at padding")
        return Batch(ids, mask.bool())

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, rows: slice) -> Batch:
        return Batch(self.inputs[rows], None if self.attention_mask is None else self.attention_mask[rows])

    @property
    def padded(self) -> bool:
        """True when some position is padding."""
        return self.attention_mask is not None and not bool(self.attention_mask.all())

    @property
    def left_padded(self) -> bool:
        """True when a sequence starts with padding (its positions would shift without position ids)."""
        return self.attention_mask is not None and not bool(self.attention_mask[:, 0].all())

    def position_ids(self) -> torch.Tensor:
        """`[batch, pos]` positions counted over real tokens only (0 at each sequence's first real token), so that
        a left-padded sequence sees the positions it would see alone; padding gets 0."""
        return (self.attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _as_ids(x, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    try:
        return torch.as_tensor(x)
    except (ValueError, TypeError, RuntimeError):
        raise ConfigError(f"{what} is not rectangular ({type(x).__name__} of unequal lengths?)",
                          hint="tokenize with padding=True (and return_tensors='pt')") from None


def accepts(module: torch.nn.Module, argument: str) -> bool:
    """Whether `module.forward` takes the keyword `argument` (explicitly; **kwargs does not count)."""
    try:
        return argument in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False


def module_forward(module: torch.nn.Module, batch: Batch):
    """Call a plain (or Hugging Face) module on a batch: the mask goes in as `attention_mask=` and, for left
    padding, real-token positions as `position_ids=`, where the forward takes them. A padded batch for a
    module that takes no mask is refused: its padded positions would change the real ones silently."""
    if batch.attention_mask is None:
        return module(batch.inputs)
    if not accepts(module, "attention_mask"):
        if batch.padded:
            raise ConfigError(f"{type(module).__name__}.forward takes no attention_mask, and the batch is padded",
                              hint="capture the sequences one by one, or unpadded")
        return module(batch.inputs)
    kwargs = {"attention_mask": batch.attention_mask.long()}
    if batch.left_padded and accepts(module, "position_ids"):
        kwargs["position_ids"] = batch.position_ids()
    if accepts(module, "use_cache"):
        kwargs["use_cache"] = False
    return module(batch.inputs, **kwargs)
