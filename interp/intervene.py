"""Interventions on any model the capture layer supports: splice an SAE at a hook, edit its latents, steer.

    from interp.intervene import intervene, Edit
    with intervene(model, sae=sae, edits=[Edit([123], "clamp", 5.0)], keep_error=True) as iv:
        out = iv.run(tokens, capture="blocks.3.hook_resid_post")
    out.delta_loss, out.kl, out.logits, out.captures

What happens at the hook, for activations x (rows of the SAE's width; per-head hooks are flattened):
    f  = encode(x)                          the SAE's latents
    f' = edits applied to f                 ablate: f_i = 0; clamp: f_i = v; scale: f_i = v · f_i
    x' = decode(f') + (x − decode(f))       with keep_error (the SAE's error is left in: only the edit acts)
    x' = decode(f')                         without keep_error (the splice itself is part of the intervention)
and then x' + steer (a vector added at `steer_hook`, default the SAE's hook), optionally only at some positions.

A transcoder (a sae-lens Transcoder, or any SAE with `cfg.d_out`) reads one hook and predicts another: its input
hook's activation is recorded during the forward and the output hook's activation y is replaced by decode(f') (+ the
error y − decode(f) with keep_error), f = encode(input); see `interp.transcoders`.

The same hook mechanics serve transformer-lens models (hook points), natively run Hugging Face models (canonical
aliases and module paths, `interp.models.native`) and any `nn.Module` (module paths). `run` also does the clean
forward, so loss deltas and the KL divergence to the clean next-token distribution come with every intervention.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from interp.errors import ConfigError, HookNotFoundError

EditMode = Literal["ablate", "clamp", "scale"]


@dataclass(frozen=True)
class Edit:
    """Set chosen latents: ablate (to 0), clamp (to `value`) or scale (by `value`), at every position or some."""

    latents: Sequence[int]
    mode: EditMode = "ablate"
    value: float = 0.0
    positions: Sequence[int] | None = None  # sequence positions it applies to (None: all)

    def apply(self, f: torch.Tensor) -> torch.Tensor:
        """f: latents [batch, pos, d_sae] -> edited copy."""
        if self.mode not in ("ablate", "clamp", "scale"):
            raise ConfigError(f"unknown edit mode {self.mode!r}", hint="use ablate, clamp or scale")
        bad = [i for i in self.latents if not 0 <= int(i) < f.shape[-1]]
        if bad:
            raise ConfigError(f"latents {bad[:5]} are not in the SAE's {f.shape[-1]} latents",
                              hint=f"latent ids run from 0 to {f.shape[-1] - 1}")
        which = torch.zeros(f.shape[-1], dtype=torch.bool, device=f.device)
        which[list(self.latents)] = True
        where = torch.zeros(f.shape[-2], dtype=torch.bool, device=f.device)
        where[slice(None) if self.positions is None else list(self.positions)] = True
        sel = where[:, None] & which[None, :]
        new = {"ablate": torch.zeros_like(f), "clamp": torch.full_like(f, float(self.value)),
               "scale": f * float(self.value)}[self.mode]
        return torch.where(sel, new, f)


@dataclass
class InterventionResult:
    """One batch under the intervention, beside the clean forward of the same batch.

    logits, clean_logits: [batch, pos, vocab]; loss, clean_loss: mean next-token cross-entropy over the real
    tokens; kl: mean KL(clean ‖ intervened) of the next-token distributions; captures: {hook: tensor} under the
    intervention (full shape, as the model emits it).
    """

    logits: torch.Tensor
    clean_logits: torch.Tensor
    loss: float
    clean_loss: float
    kl: float
    captures: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def delta_loss(self) -> float:
        return self.loss - self.clean_loss


def sae_hook(sae: Any) -> str:
    """The hook an sae-lens SAE was trained on (its metadata), or a clear error."""
    meta = getattr(getattr(sae, "cfg", None), "metadata", None)
    name = getattr(meta, "hook_name", None) or getattr(getattr(sae, "cfg", None), "hook_name", None)
    if not name:
        raise ConfigError("the SAE does not name its hook", hint="pass hook= explicitly")
    return str(name)


def sae_edit_fn(sae: Any, edits: Sequence[Edit] = (), keep_error: bool = False) -> Callable[[torch.Tensor],
                                                                                               torch.Tensor]:
    """x -> x' at the SAE's hook (see the module docstring); per-head inputs [b, p, h, d] are flattened to h·d."""
    from interp.saes import flat_rows

    d_in = int(sae.cfg.d_in)

    def fn(x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(*shape[:2], -1) if x.ndim > 3 else x
        if rows.shape[-1] != d_in:
            raise ConfigError(f"the SAE takes width {d_in}, the hook gives {tuple(shape)}",
                              hint="splice the SAE at the hook it was trained on")
        xs = rows.to(sae.W_dec.dtype)
        with flat_rows(sae):
            f = sae.encode(xs)
            edited = f
            for e in edits:
                edited = e.apply(edited)
            out = sae.decode(edited)
            if keep_error:
                out = out + (xs - sae.decode(f))
        return out.to(x.dtype).reshape(shape)

    return fn


def _tensor_of(value: Any) -> torch.Tensor:
    return value[0] if isinstance(value, tuple) else value


def _replace(value: Any, new: torch.Tensor) -> Any:
    return (new, *value[1:]) if isinstance(value, tuple) else new


@contextlib.contextmanager
def edit_hooks(model: torch.nn.Module, edits: dict[str, Callable[[torch.Tensor], torch.Tensor]],
               captures: dict[str, torch.Tensor] | None = None) -> Iterator[None]:
    """While inside, the output at each hook name is replaced by `fn(output)`; `captures` (if given) receives
    {hook: tensor} for its keys. Hook names: transformer-lens hook points, native aliases or module paths."""
    from interp.models import is_transformer

    captures = captures if captures is not None else {}
    wanted = set(captures) | set(edits)

    def act(name: str, x: torch.Tensor) -> torch.Tensor:
        if name in edits:
            x = edits[name](x)
        if name in captures:
            captures[name] = x.detach()
        return x

    if is_transformer(model):
        known = set(model.hook_dict)
        unknown = sorted(wanted - known)
        if unknown:
            raise HookNotFoundError(f"no hook point {unknown[0]} in the model", hint="see model.hook_dict")
        hooks = [(n, lambda x, hook: act(hook.name, x)) for n in wanted]
        with model.hooks(fwd_hooks=hooks):
            yield
        return
    handles = []
    try:
        for name in wanted:
            handles.append(_attach_edit(model, name, lambda x, n=name: act(n, x)))
        yield
    finally:
        for h in handles:
            h.remove()


def _attach_edit(model: torch.nn.Module, name: str, fn: Callable[[torch.Tensor], torch.Tensor]):
    """A forward (or pre-) hook that replaces the tensor at `name` by fn(tensor)."""
    from interp.models.native import NativeModel

    path, where = (model.aliases.get(name, (name, "out")) if isinstance(model, NativeModel) else (name, "out"))
    modules = model._modules_by_path if isinstance(model, NativeModel) else dict(model.named_modules())
    module = modules.get(path)
    if module is None:
        raise HookNotFoundError(f"{name} is not a hook point of {type(model).__name__}",
                                hint="use a canonical hook name or a module path (interp.capture.hook_names)")
    if where == "out":
        return module.register_forward_hook(lambda m, args, out: _replace(out, fn(_tensor_of(out))))

    def pre(m, args, kwargs):
        if args:
            return (fn(args[0]), *args[1:]), kwargs
        key = "hidden_states" if "hidden_states" in kwargs else next(iter(kwargs))
        return args, {**kwargs, key: fn(kwargs[key])}

    return module.register_forward_pre_hook(pre, with_kwargs=True)


def model_logits(model: torch.nn.Module, tokens: torch.Tensor,
                 attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Next-token logits [batch, pos, vocab] of any model the capture layer supports (TL, native HF, a module)."""
    from interp.models import is_transformer

    if is_transformer(model):
        kwargs = {"attention_mask": attention_mask} if attention_mask is not None else {}
        return model(tokens, return_type="logits", **kwargs)
    out = model(tokens, attention_mask=attention_mask) if attention_mask is not None else model(tokens)
    out = getattr(out, "logits", out)
    if not isinstance(out, torch.Tensor) or out.ndim != 3:
        raise ConfigError("the model's forward does not return logits [batch, pos, vocab]",
                          hint="interventions with loss need a language model; capture-only edits work with any")
    return out


def next_token_stats(logits: torch.Tensor, clean: torch.Tensor, tokens: torch.Tensor,
                     attention_mask: torch.Tensor | None = None) -> tuple[float, float, float]:
    """(loss, clean loss, KL(clean ‖ edited)) of next-token prediction, means over real (unpadded) positions."""
    lp = torch.log_softmax(logits[:, :-1].double(), -1)
    lc = torch.log_softmax(clean[:, :-1].double(), -1)
    target = tokens[:, 1:]
    keep = torch.ones_like(target, dtype=torch.bool) if attention_mask is None else (
        attention_mask[:, 1:].bool() & attention_mask[:, :-1].bool())
    nll = -lp.gather(-1, target[..., None])[..., 0]
    nll_c = -lc.gather(-1, target[..., None])[..., 0]
    kl = (lc.exp() * (lc - lp)).sum(-1)
    return float(nll[keep].mean()), float(nll_c[keep].mean()), float(kl[keep].mean())


def per_token_nll(model: torch.nn.Module, tokens: torch.Tensor,
                  edits: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None) -> torch.Tensor:
    """Next-token cross-entropy at each position [batch, pos - 1] under `edits` (as transformer-lens'
    `loss_per_token`, float32 log-softmax), for any model the capture layer supports."""
    with edit_hooks(model, edits or {}):
        logits = model_logits(model, tokens)
    return -logits.log_softmax(-1)[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]


class Intervention:
    """The active intervention of `intervene(...)`: `run(tokens)` gives the intervened and the clean forward."""

    def __init__(self, model: torch.nn.Module, edits: dict[str, Callable[[torch.Tensor], torch.Tensor]]):
        self.model = model
        self.edits = edits

    @torch.no_grad()
    def run(self, tokens: torch.Tensor, capture: str | Sequence[str] = (),
            attention_mask: torch.Tensor | None = None) -> InterventionResult:
        """tokens [batch, pos]: logits, loss, KL against the clean forward, and captures of `capture` hooks."""
        names = [capture] if isinstance(capture, str) else list(capture)
        clean = model_logits(self.model, tokens, attention_mask)
        store: dict[str, torch.Tensor] = dict.fromkeys(names)  # type: ignore[arg-type]
        with edit_hooks(self.model, self.edits, store):
            logits = model_logits(self.model, tokens, attention_mask)
        loss, clean_loss, kl = next_token_stats(logits, clean, tokens, attention_mask)
        return InterventionResult(logits=logits, clean_logits=clean, loss=loss, clean_loss=clean_loss, kl=kl,
                                  captures={k: v for k, v in store.items() if v is not None})


@contextlib.contextmanager
def intervene(model: torch.nn.Module, *, sae: Any = None, hook: str | None = None, edits: Sequence[Edit] = (),
              keep_error: bool = False, splice: bool = True, steer: torch.Tensor | None = None,
              steer_hook: str | None = None, steer_positions: Sequence[int] | None = None,
              hook_out: str | None = None) -> Iterator[Intervention]:
    """An intervention on `model` while the block runs (see the module docstring).

    sae:        an sae-lens SAE to splice at `hook` (default: the hook it was trained on); with `splice=False` and
                no edits it is not applied. A transcoder reads `hook` (default metadata.hook_name) and replaces
                `hook_out` (default metadata.hook_name_out), which must fire after it
    edits:      latent edits (`Edit`) applied between encode and decode
    keep_error: add the SAE's error x − decode(encode(x)) back, so only the edits change the activations
    steer:      a vector [d] added at `steer_hook` (default: the SAE's hook, a spliced transcoder's output), at
                `steer_positions` or everywhere
    """
    hook_fns: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    default_hook = hook
    if sae is not None and (splice or edits):
        from interp.transcoders import is_transcoder, transcoder_edit_fns, transcoder_hooks

        if is_transcoder(sae):
            hook_fns.update(transcoder_edit_fns(sae, edits, keep_error, hook=hook, hook_out=hook_out))
            default_hook = transcoder_hooks(sae, hook, hook_out)[1]
        else:
            name = hook or sae_hook(sae)
            hook_fns[name] = sae_edit_fn(sae, edits, keep_error=keep_error)
    elif edits:
        raise ConfigError("latent edits need an SAE", hint="pass sae=")
    if steer is not None:
        name = steer_hook or default_hook or (sae_hook(sae) if sae is not None else None)
        if name is None:
            raise ConfigError("a steering vector needs a hook", hint="pass steer_hook=")
        inner = hook_fns.get(name)
        observes = bool(getattr(inner, "observes", False))  # a transcoder's input: record the steered activation
        vec = torch.as_tensor(steer)

        def add(x: torch.Tensor, inner=inner) -> torch.Tensor:
            x = inner(x) if inner is not None and not observes else x
            v = vec.to(x.device, x.dtype)
            if steer_positions is None:
                x = x + v
            else:
                x = x.clone()
                x[:, list(steer_positions)] += v
            return inner(x) if inner is not None and observes else x

        hook_fns[name] = add
    yield Intervention(model, hook_fns)
