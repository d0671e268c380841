"""Model inputs with their attention mask: token ids travel with the mask so that padded positions never reach
a capture, a cache or an analysis.

`Batch.of(inputs)` accepts what people have at hand: a `[batch, pos]` tensor of token ids, a dict or
`transformers.BatchEncoding` with `input_ids` and `attention_mask` (what a tokenizer returns with padding), or
`input_ids=` / `attention_mask=` keywords. Inputs that are not token ids (a plain module's float features) pass
through untouched, without a mask.

Sentence pairs for an encoder (BERT) also carry `token_type_ids` (segment A = 0, segment B = 1): they travel with
the batch and go to every forward that takes them. A forward that takes none refuses them unless they are all 0
(what a tokenizer returns for single texts), since dropping segment B would change the activations silently.
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
    token_type_ids: torch.Tensor | None = None  # [batch, pos] segment ids of sentence pairs (encoders)

    @staticmethod
    def of(inputs=None, *, input_ids=None, attention_mask=None, token_type_ids=None) -> Batch:
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
            if token_type_ids is not None and inputs.get("token_type_ids") is not None:
                raise ConfigError("token_type_ids given twice (in the inputs and as token_type_ids=)",
                                  hint="pass one of them")
            attention_mask = inputs.get("attention_mask") if attention_mask is None else attention_mask
            token_type_ids = inputs.get("token_type_ids") if token_type_ids is None else token_type_ids
            inputs = inputs["input_ids"]
            inputs = _as_ids(inputs, "input_ids")
        if attention_mask is None and token_type_ids is None:
            return Batch(inputs)
        ids = _as_ids(inputs, "input_ids")
        mask = None if attention_mask is None else _as_ids(attention_mask, "attention_mask").to(ids.device)
        types = None if token_type_ids is None else _as_ids(token_type_ids, "token_type_ids").to(ids.device)
        for what, x in (("attention_mask", mask), ("token_type_ids", types)):
            if x is not None and x.shape != ids.shape:
                raise ConfigError(f"{what} has shape {tuple(x.shape)}, input_ids {tuple(ids.shape)}",
                                  hint=f"pass the {what} the tokenizer returned with these ids")
        if mask is not None and not bool(((mask == 0) | (mask == 1)).all()):
            raise ConfigError("attention_mask holds values other than 0 and 1", hint="1 at real tokens, 0 at padding")
        return Batch(ids, None if mask is None else mask.bool(), None if types is None else types.long())

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, rows: slice) -> Batch:
        return Batch(self.inputs[rows], None if self.attention_mask is None else self.attention_mask[rows],
                     None if self.token_type_ids is None else self.token_type_ids[rows])

    @property
    def segments(self) -> bool:
        """True when some token is in segment B (nonzero token_type_ids): a forward must receive them."""
        return self.token_type_ids is not None and bool(self.token_type_ids.any())

    def segment_kwargs(self, forward_owner, what: str) -> dict:
        """`{"token_type_ids": ...}` where `forward_owner`'s forward takes them; {} where all are 0 and it takes
        none; refused where segment B would be dropped."""
        if self.token_type_ids is None:
            return {}
        if accepts(forward_owner, "token_type_ids"):
            return {"token_type_ids": self.token_type_ids}
        if self.segments:
            raise ConfigError(f"{what} takes no token_type_ids, and the inputs hold segment B (token_type_ids 1)",
                              hint="sentence pairs need an encoder that takes token_type_ids (BERT); for this model "
                                   "tokenize the texts singly")
        return {}

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
    kwargs = batch.segment_kwargs(module, f"{type(module).__name__}.forward")
    if batch.attention_mask is None:
        return module(batch.inputs, **kwargs)
    if not accepts(module, "attention_mask"):
        if batch.padded:
            raise ConfigError(f"{type(module).__name__}.forward takes no attention_mask, and the batch is padded",
                              hint="capture the sequences one by one, or unpadded")
        return module(batch.inputs, **kwargs)
    kwargs["attention_mask"] = batch.attention_mask.long()
    if batch.left_padded and accepts(module, "position_ids"):
        kwargs["position_ids"] = batch.position_ids()
    if accepts(module, "use_cache"):
        kwargs["use_cache"] = False
    return module(batch.inputs, **kwargs)
