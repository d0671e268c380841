"""Encoding captured rows with an SAE: a transform on the capture side, before the cache's writer sees them.

`interp extract --sae PATH --sparse topk|threshold` stores an SAE's latents instead of the hook's activations. The
cache formats (interp.cache.formats) know only tensors; this module is what knows SAEs: it builds the hook's
format spec (the cache spec plus "sae": PATH, which the manifest records, so a resume must use the same SAE),
checks the SAE's width against the hook before anything is written, and turns a shard's hook rows into latents
(`encode_rows`, sae-lens `encode`: the encoder output, not the decoder's; delphi PR #131) for the format's encoder.
SAEs are loaded once per process.

Transcoders (`interp.transcoders`: read an input hook, predict an output hook) encode their INPUT hook's rows, so
`--hooks` must name the input hook; their spec also records "transcoder": true and "hook_out" (the output hook
the decoder writes), and naming the output hook is refused before the model loads (`check_transcoder_hooks`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from interp.cache.formats import get as get_format
from interp.cache.sparse_formats import sparse_spec as storage_spec
from interp.capture import Capturer, glob_match, resolve_hooks
from interp.errors import ConfigError
from interp.saes import flat_rows, load_sae

_SAES: dict[tuple[str, str], Any] = {}
DEFAULT_HOOKS = ["blocks.*.hook_resid_post"]  # interp extract's --hooks default


def sae_model(path: str, device: str = "cpu") -> Any:
    """The sae-lens SAE at `path` (eval mode), loaded once per process and device."""
    key = (str(path), device)
    if key not in _SAES:
        _SAES[key] = load_sae(path, device=device).eval()
    return _SAES[key]


def sparse_spec(kind: str, *, k: int | None = None, threshold: float | None = None, sae: str | None = None,
                d: int | None = None, value_dtype: str = "bfloat16", by: str | None = None) -> dict[str, Any]:
    """The per-hook format spec for ExtractConfig.formats. With `sae` the stored rows are its latents (d_sae wide,
    kept by value; k defaults to a TopK SAE's k); without, the hook's own `d`-wide activations (kept by |a|)."""
    if sae is None:
        return storage_spec(kind, d=d, k=k, threshold=threshold, value_dtype=value_dtype, by=by or "abs")
    model = sae_model(sae)
    if kind == "topk" and k is None:
        k = getattr(model.cfg, "k", None)
    spec = storage_spec(kind, d=int(model.cfg.d_sae), k=k, threshold=threshold, value_dtype=value_dtype,
                        by=by or "value")
    out = {"format": spec["format"], "dtype": spec["dtype"], "sae": str(sae), **spec}
    from interp.transcoders import is_transcoder  # imports sae-lens (seconds): only once an SAE is loaded

    if is_transcoder(model):  # the manifest says whose latents these are and where the decoder writes
        h_out = _own_hooks(model)[1]
        out.update({"transcoder": True, **({"hook_out": h_out} if h_out else {})})
    return out


def _own_hooks(sae: Any) -> tuple[str | None, str | None]:
    """(input hook, output hook) an SAE's metadata names; the output hook only for transcoders (else None)."""
    from interp.transcoders import is_transcoder

    meta = getattr(sae.cfg, "metadata", None)
    h_in = getattr(meta, "hook_name", None)
    h_out = (getattr(meta, "hook_name_out", None) or getattr(sae.cfg, "hook_name_out", None)
             if is_transcoder(sae) else None)
    return (str(h_in) if h_in else None), (str(h_out) if h_out else None)


def check_transcoder_hooks(hooks: list[str], sae: str) -> None:
    """Refuse (one line naming both hooks) hook names or globs that reach a transcoder's OUTPUT hook but not its
    input hook: its latents encode the input hook's rows. Needs no model (globs are matched against the two names);
    an SAE, or a transcoder that does not name both hooks, passes."""
    h_in, h_out = _own_hooks(sae_model(sae))
    if not h_in or not h_out or h_in == h_out:
        return
    if any(glob_match(p, h_out) for p in hooks) and not any(glob_match(p, h_in) for p in hooks):
        raise ConfigError(f"the transcoder {sae} reads {h_in} and predicts {h_out}: its latents encode the input "
                          f"hook {h_in}, not the output hook {h_out} that --hooks names",
                          hint=f"pass --hooks {h_in} (or leave --hooks out)")


def check_format_hooks(formats: dict[str, dict]) -> None:
    """`check_transcoder_hooks` for every hook of ExtractConfig.formats whose spec names an SAE (the Python path)."""
    for hook, spec in formats.items():
        if spec.get("sae"):
            check_transcoder_hooks([hook], spec["sae"])


def check_sae_width(hook: str, row_shape: tuple[int, ...], spec: dict) -> None:
    """Refuse an SAE whose d_in is not the width of the hook's rows (one line naming both widths); a spec without
    an SAE passes. Extraction calls this before any shard (or manifest) is written."""
    if not spec.get("sae"):
        return
    width, d_in = int(np.prod(row_shape)), int(sae_model(spec["sae"]).cfg.d_in)
    if width != d_in:
        raise ConfigError(f"SAE {spec['sae']} has d_in={d_in}, but hook {hook} has width {width}",
                          hint="pass the hook the SAE was trained on (--hooks), or an SAE trained on this hook")


def encode_rows(x: torch.Tensor, spec: dict) -> torch.Tensor:
    """What a hook stores: the SAE's latents `[rows, d_sae]` when the spec names one, else the rows unchanged."""
    if not spec.get("sae"):
        return x
    x = x.reshape(x.shape[0], -1)
    sae = sae_model(spec["sae"], str(x.device))  # where the rows are: on the model's GPU during extraction
    if x.shape[1] != int(sae.cfg.d_in):  # extract checks this up front; this guards other callers
        raise ConfigError(f"SAE {spec['sae']} has d_in={int(sae.cfg.d_in)}, but the activations it should "
                          f"encode have width {x.shape[1]}", hint="pass activations of the hook the SAE was "
                          "trained on")
    with torch.no_grad(), flat_rows(sae):
        return sae.encode(x.to(sae.W_enc.dtype))


def with_encode_device(formats: dict[str, dict], device: torch.device | str) -> dict[str, dict]:
    """The hook formats with "encode_device" added where extraction encodes and selects on a non-CPU device (every
    sparse format): GPU matmuls and top-k differ from the host's in the last bits or the order of ties, so the
    manifest's identity must say where a cache was encoded, and a resume on the other kind of device is refused.
    On the CPU the specs stay as they were, so caches written before this was recorded resume as before."""
    kind = torch.device(device).type
    if kind == "cpu":
        return formats
    return {hook: {**spec, "encode_device": kind} if get_format(spec.get("format", "dense")).select else spec
            for hook, spec in formats.items()}


def sparse_hook_formats(model: torch.nn.Module, hooks: list[str], kind: str | None, *, k: int | None = None,
                        threshold: float | None = None, sae: str | None = None,
                        value_dtype: str = "bfloat16") -> tuple[list[str], dict[str, dict]]:
    """Resolve hook globs and build ExtractConfig.formats for `interp extract --sae PATH --sparse topk|threshold`.

    With an SAE the hooks must resolve to one hook (the SAE's `metadata.hook_name` is used when it matches
    or when the hooks are the extract default); the format defaults to topk for TopK SAEs, else threshold.
    """
    if sae is not None:
        check_transcoder_hooks(hooks, sae)
        model_sae = sae_model(sae)
        own = _own_hooks(model_sae)[0]
        names = resolve_hooks(model, hooks)
        if own and (own in names or hooks == DEFAULT_HOOKS):
            names = [own]
        if own and len(names) == 1 and names[0] != own:  # same width, another layer: codes of the wrong rows
            raise ConfigError(f"the SAE {sae} was trained on {own}, not on {names[0]}",
                              hint=f"pass --hooks {own} (or leave --hooks out)")
        if len(names) != 1:
            raise ConfigError(f"--sae needs exactly one hook, the hooks resolve to {names}",
                              hint="pass --hooks with the SAE's hook name")
        kind = kind or ("topk" if getattr(model_sae.cfg, "k", None) else "threshold")
        spec = sparse_spec(kind, k=k, threshold=threshold, sae=sae, value_dtype=value_dtype)
        check_sae_width(names[0], _row_shapes(model, names)[names[0]], spec)  # before any cache file exists
        return names, {names[0]: spec}
    if kind is None:
        raise ConfigError("--sparse needs a kind", hint="pass --sparse topk or --sparse threshold")
    names = resolve_hooks(model, hooks)
    formats = {n: sparse_spec(kind, k=k, threshold=threshold, d=int(np.prod(shape)), value_dtype=value_dtype)
               for n, shape in _row_shapes(model, names).items()}
    return names, formats


def _row_shapes(model: torch.nn.Module, names: list[str]) -> dict[str, tuple[int, ...]]:
    """Shape of one cache row of each hook (what extract stores per token), from a two-token probe."""
    device = next(iter(model.parameters())).device
    probe = Capturer(model, names, positions="all", flatten=True)(torch.zeros(1, 2, dtype=torch.long, device=device))
    return {n: tuple(v.shape[1:]) for n, v in probe.items()}
