"""Transcoders: SAEs that read one hook and predict another, spliced in as the output hook's replacement.

A transcoder from hook a (its input, e.g. `blocks.L.ln2.hook_normalized`) to hook b (its output, e.g.
`blocks.L.hook_mlp_out`) with activations x at a and y at b:

    f  = encode(x)                        latents (no b_dec is taken off the input: b_dec lives in b's space)
    ŷ  = decode(f) + x W_skipᵀ            the prediction of y; W_skip [d_out, d_in] only for skip transcoders

Spliced into a forward (`interp.intervene.intervene(model, sae=transcoder, ...)`), x is recorded when hook a fires
and, when hook b fires later in the same forward, y is replaced by

    y' = decode(f') + x W_skipᵀ                          without keep_error: the transcoder replaces the MLP
    y' = y + (decode(f') − decode(f))                     with keep_error: = decode(f') + x W_skipᵀ + (y − ŷ), so
                                                          only the edits act (exactly y when none changes f)

with f' the edited latents. Hook a must fire before hook b; the output hook checks that the input was recorded in
this forward (and for this batch) and refuses otherwise. Input hook: `hook=` or `metadata.hook_name`; output hook:
`hook_out=` or `metadata.hook_name_out` (where sae-lens' loaders put it).

sae-lens 6.54 has no TopK transcoder, which sparsify's `transcode: true` coders are, so `TopKTranscoder` is sae-lens'
`Transcoder` with its TopK activation, f = TopK_k(ReLU(x W_enc + b_enc)), and `TopKSkipTranscoder` adds
sae-lens' `SkipTranscoder` term x W_skipᵀ. Both are registered with sae-lens ("topk_transcoder",
"topk_skip_transcoder"), so the folders `interp.saes.save_sae` writes load back with `SAE.load_from_disk`.

On transformer-lens models `ln2.hook_normalized` is the normalised MLP input *before* the norm's weight and bias
(equal to the MLP input when the model was loaded with fold_ln processing); on natively run Hugging Face models the
canonical alias is the norm module's full output, the MLP's input as sparsify records it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from sae_lens import SkipTranscoder, Transcoder, TranscoderConfig
from sae_lens.registry import SAE_CLASS_REGISTRY, register_sae_class
from sae_lens.saes.topk_sae import TopK

from interp.errors import ConfigError


class LatentEdit(Protocol):
    """What `interp.intervene.Edit` is to this module: latents [b, p, d_sae] -> edited latents."""

    def apply(self, f: torch.Tensor) -> torch.Tensor: ...


@dataclass
class TopKTranscoderConfig(TranscoderConfig):
    """A sae-lens transcoder config with the number of latents kept per row."""

    k: int = 32

    @classmethod
    def architecture(cls) -> str:
        return "topk_transcoder"


class TopKTranscoder(Transcoder):
    """sae-lens' Transcoder with the TopK activation: f = TopK_k(ReLU(x W_enc + b_enc)), ŷ = f W_dec + b_dec.

    sae-lens' TopK takes the k largest pre-activations and ReLUs them; taking the top k after the ReLU (as sparsify
    does) keeps the same non-zero values, so the latents are equal."""

    cfg: TopKTranscoderConfig  # type: ignore[assignment]

    def get_activation_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return TopK(int(self.cfg.k))

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any]) -> TopKTranscoder:
        return cls(TopKTranscoderConfig.from_dict(config_dict))


@dataclass
class TopKSkipTranscoderConfig(TopKTranscoderConfig):
    """TopKTranscoderConfig with sae-lens' skip connection W_skip [d_out, d_in]."""

    @classmethod
    def architecture(cls) -> str:
        return "topk_skip_transcoder"


class TopKSkipTranscoder(TopKTranscoder, SkipTranscoder):
    """TopKTranscoder plus sae-lens' SkipTranscoder term: forward(x) = decode(encode(x)) + x W_skipᵀ."""

    cfg: TopKSkipTranscoderConfig  # type: ignore[assignment]

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any]) -> TopKSkipTranscoder:
        return cls(TopKSkipTranscoderConfig.from_dict(config_dict))


for _arch, _cls, _cfg in (("topk_transcoder", TopKTranscoder, TopKTranscoderConfig),
                          ("topk_skip_transcoder", TopKSkipTranscoder, TopKSkipTranscoderConfig)):
    if _arch not in SAE_CLASS_REGISTRY:
        register_sae_class(_arch, _cls, _cfg)


def is_transcoder(sae: Any) -> bool:
    """Whether `sae` predicts another hook than it reads: a sae-lens Transcoder (any subclass) or a `cfg.d_out`."""
    return isinstance(sae, Transcoder) or getattr(getattr(sae, "cfg", None), "d_out", None) is not None


def transcoder_hooks(sae: Any, hook: str | None = None, hook_out: str | None = None) -> tuple[str, str]:
    """(input hook, output hook) of a transcoder: the arguments, else its metadata, else a ConfigError."""
    cfg = getattr(sae, "cfg", None)
    meta = getattr(cfg, "metadata", None)
    h_in = hook or getattr(meta, "hook_name", None) or getattr(cfg, "hook_name", None)
    if not h_in:
        raise ConfigError("the transcoder does not name its input hook (metadata.hook_name)",
                          hint="pass hook=, e.g. hook='blocks.3.ln2.hook_normalized'")
    h_out = hook_out or getattr(meta, "hook_name_out", None) or getattr(cfg, "hook_name_out", None)
    if not h_out:
        raise ConfigError(f"the transcoder reads {h_in} but names no output hook (metadata.hook_name_out)",
                          hint="pass hook_out=, e.g. hook_out='blocks.3.hook_mlp_out'")
    return str(h_in), str(h_out)


def has_skip(sae: Any) -> bool:
    """Whether the transcoder has a skip connection W_skip [d_out, d_in] (sae-lens' SkipTranscoder and kin)."""
    return getattr(sae, "W_skip", None) is not None


def skip_term(sae: Any, x: torch.Tensor) -> torch.Tensor:
    """x W_skipᵀ [.., d_out] for rows x [.., d_in] of a skip transcoder (in x's dtype), else zeros."""
    if not has_skip(sae):
        return x.new_zeros(*x.shape[:-1], int(sae.cfg.d_out))
    return x @ sae.W_skip.T.to(x.device, x.dtype)


@torch.no_grad()
def encode_predict(sae: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(f [N, d_sae], ŷ [N, d_out]) of input rows x [N, d_in], in the transcoder's dtype and on its device:

        f = encode(x),   ŷ = decode(f) + x W_skipᵀ      (the skip term only for skip transcoders)

    ŷ is what a splice without edits puts at the output hook (`transcoder_edit_fns`)."""
    param = sae.W_dec
    xs = x.to(param.device, param.dtype)
    f = sae.encode(xs)
    y = sae.decode(f)
    return f, (y + skip_term(sae, xs) if has_skip(sae) else y)


@torch.no_grad()
def predict(sae: Any, x_in: torch.Tensor, *, batch_size: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """The transcoder's prediction of its OUTPUT hook from rows of its INPUT hook, and the per-row L0:

        ŷ = decode(encode(x)) + x W_skipᵀ   [N, d_out],   L0 = #{i : f_i ≠ 0}   [N]      (float32, no grad)

    `interp.saes.reconstruct` hands transcoders here, so callers that score ŷ must compare it with the output
    hook's activations y, not with x."""
    if x_in.dim() != 2 or x_in.shape[1] != int(sae.cfg.d_in):
        raise ConfigError(f"activations {tuple(x_in.shape)} do not match the transcoder's d_in={sae.cfg.d_in}",
                          hint="pass [N, d_in] rows of the transcoder's input hook (metadata.hook_name)")
    preds, l0s = [], []
    for s in range(0, x_in.shape[0], batch_size):
        f, y = encode_predict(sae, x_in[s:s + batch_size])
        preds.append(y.float())
        l0s.append((f != 0).sum(-1).float())
    return torch.cat(preds), torch.cat(l0s)


class InputRecorder:
    """The input hook's function: keeps the activation for the output hook and returns it unchanged."""

    observes = True  # intervene() applies a steering vector at this hook before recording

    def __init__(self) -> None:
        self.x: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.x = x
        return x

    def take(self) -> torch.Tensor | None:
        """The recorded activation, cleared, so that the next forward must record its own."""
        x, self.x = self.x, None
        return x


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(*t.shape[:2], -1) if t.ndim > 3 else t


def transcoder_edit_fns(sae: Any, edits: Sequence[LatentEdit] = (), keep_error: bool = False, *,
                        hook: str | None = None, hook_out: str | None = None
                        ) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """{input hook: record x, output hook: y -> y'} (see the module docstring), for `interp.intervene.edit_hooks`.

    Per-head activations [b, p, h, d] are flattened to h·d as for SAEs. When both hooks are one hook the
    function records and replaces in one step (the transcoder is then an SAE at that hook). sae-lens transcoders
    take rows as they come (no hook_z reshaping), so no `interp.saes.flat_rows` is needed."""
    h_in, h_out = transcoder_hooks(sae, hook, hook_out)
    d_in, d_out = int(sae.cfg.d_in), int(sae.cfg.d_out)
    skips = has_skip(sae)
    recorder = InputRecorder()

    def replace(y: torch.Tensor) -> torch.Tensor:
        x = recorder.take()
        ys = _rows(y)
        if x is None or _rows(x).shape[:-1] != ys.shape[:-1]:
            raise ConfigError(f"the transcoder's output hook {h_out} fired before its input hook {h_in} in this "
                              "forward", hint="a transcoder's input hook must run first, e.g. "
                                              "blocks.L.ln2.hook_normalized -> blocks.L.hook_mlp_out")
        xs = _rows(x)
        if xs.shape[-1] != d_in or ys.shape[-1] != d_out:
            raise ConfigError(f"the transcoder maps width {d_in} -> {d_out}, the hooks give {tuple(x.shape)} at "
                              f"{h_in} and {tuple(y.shape)} at {h_out}",
                              hint="splice the transcoder at the hooks it was trained on")
        dt = sae.W_dec.dtype
        xs = xs.to(dt)
        f = sae.encode(xs)
        edited = f
        for e in edits:
            edited = e.apply(edited)
        out = sae.decode(edited)
        if keep_error:  # y + (decode(f') − decode(f)): exactly y when no edit changes f
            out = ys.to(dt) + (out - sae.decode(f))
        elif skips:
            out = out + skip_term(sae, xs)
        return out.to(y.dtype).reshape(y.shape)

    if h_in == h_out:
        return {h_in: lambda x: replace(recorder(x))}
    return {h_in: recorder, h_out: replace}
