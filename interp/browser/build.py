"""`build_browser`: sparse cache + SAE (+ model) -> an offline latent-browser site; `browse` for Jupyter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from interp.browser.collect import LatentData, collect
from interp.browser.contexts import token_namer
from interp.browser.site import Extras, write_site
from interp.browser.weights import decoder_neighbours, load_sae_weights, logit_effects, unembedding
from interp.errors import ConfigError, InterpError


def pick_device(device: str = "auto") -> str:
    """'auto' -> cuda when there is a GPU, else cpu."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def sae_hooks(sae: str | Path | Any) -> tuple[str | None, str | None, bool]:
    """(hook the SAE reads, hook its decoder writes, whether it is a transcoder): an SAE writes the hook it reads
    (None here); a transcoder (`interp.transcoders`) names its output hook in metadata.hook_name_out. From a
    sae-lens cfg.json, another library's folder (`interp.sae_formats`) or a loaded SAE; (None, None, False) when
    the folder does not say."""
    if isinstance(sae, (str, Path)):
        from interp.saes import sae_entries

        try:
            entries = sae_entries(sae)
        except (InterpError, OSError, ValueError):
            return None, None, False
        if len(entries) != 1:
            return None, None, False
        e = entries[0]
        return e["hook"], e.get("hook_out"), bool(e.get("hook_out")) or "transcoder" in str(e.get("architecture"))
    from interp.transcoders import is_transcoder

    cfg = sae.cfg
    meta = getattr(cfg, "metadata", None)
    if not is_transcoder(sae):
        return getattr(meta, "hook_name", None), None, False
    return (getattr(meta, "hook_name", None),
            getattr(meta, "hook_name_out", None) or getattr(cfg, "hook_name_out", None), True)


def _sae_hook(sae: str | Path | Any) -> str | None:
    """The hook an SAE was trained on (a transcoder: its input hook), if it says (see sae_hooks)."""
    return sae_hooks(sae)[0]


def latent_hook(reader: Any, hook: str | None, sae: str | Path | Any) -> str:
    """The sparse hook holding the SAE's latents: `hook`, else the one whose spec names this SAE, else the only one."""
    sparse = [h for h in reader.hooks if reader.spec(h).get("format") in ("topk", "threshold")]
    if hook is not None:
        if hook not in sparse:
            raise ConfigError(f"hook {hook} is not a sparse hook of {reader.path} (sparse: {sparse or 'none'})",
                              hint="extract the SAE's latents with interp extract --sae ... --sparse topk")
        return hook
    named = [h for h in sparse if isinstance(sae, (str, Path)) and
             Path(str(reader.spec(h).get("sae", ""))).name == Path(sae).name]
    if len(named) == 1 or len(sparse) == 1:
        return (named or sparse)[0]
    raise ConfigError(f"{reader.path} has {len(sparse)} sparse hooks ({', '.join(sparse) or 'none'})",
                      hint="pass the latents' hook with --hook (extract them with --sae ... --sparse topk)")


def dense_source(reader: Any, dense_cache: str | Path | None, sae_hook: str | None, latents: str
                 ) -> tuple[tuple[Any, str] | None, str]:
    """(reader, hook) of the SAE's input rows densely over the same tokens, or None and the note saying why."""
    from interp.cache import open_cache

    cands = [reader] + ([open_cache(dense_cache)] if dense_cache is not None else [])
    for r in cands[::-1]:
        for h in [sae_hook, latents]:
            if h and h in r.hooks and r.spec(h).get("format") == "dense":
                if r is not reader:
                    _same_tokens(reader, r)
                return (r, h), ""
    return None, ("no correlation with the SAE-error norm: the cache does not hold the SAE's hook "
                  f"({sae_hook or 'unknown'}) densely (pass --dense-cache with it, extracted over the same tokens)")


def transcoder_dense_source(reader: Any, dense_cache: str | Path | None, h_in: str | None, h_out: str | None,
                            widths: tuple[int, int], skip: bool
                            ) -> tuple[tuple[Any, str] | None, tuple[Any, str] | None, str]:
    """(reader, output hook) of the transcoder's target rows y, (reader, input hook) of its input rows x when it has
    a skip term (else None), densely over the latent cache's tokens; or Nones and the note saying why not.
    widths: (d_in, d_out). The latents come from the sparse cache, so x is needed only for x W_skipᵀ."""
    from interp.cache import open_cache

    cands = ([open_cache(dense_cache)] if dense_cache is not None else []) + [reader]

    def find(h: str | None, width: int) -> tuple[Any, str] | None:
        for r in cands:
            if h and h in r.hooks and r.spec(h).get("format") == "dense":
                if int(np.prod(r.spec(h)["shape"])) != width:
                    raise ConfigError(f"hook {h} of {r.path} has width {int(np.prod(r.spec(h)['shape']))}, the "
                                      f"transcoder's {'output' if h == h_out else 'input'} width is {width}",
                                      hint="pass the transcoder the caches were extracted for")
                if r is not reader:
                    _same_tokens(reader, r)
                return r, h
        return None

    if not h_out:
        return None, None, ("no correlation with the transcoder's prediction-error norm: it names no output hook "
                            "(metadata.hook_name_out)")
    out, inp = find(h_out, widths[1]), (find(h_in, widths[0]) if skip else None)
    if out is None or (skip and inp is None):
        need = f"its output hook {h_out}" + (f" and its input hook {h_in} (for the skip term)" if skip else "")
        return None, None, (f"no correlation with the transcoder's prediction-error norm ‖y − ŷ‖: the caches do not "
                            f"hold {need} densely (pass --dense-cache with {'them' if skip else 'it'}, extracted "
                            "over the same tokens)")
    return out, inp, ""


def _same_tokens(a: Any, b: Any) -> None:
    if a.n_rows != b.n_rows:
        raise ConfigError(f"the dense cache has {b.n_rows} rows, the latent cache {a.n_rows}",
                          hint="extract both with the same --data, --tokens, --ctx and --positions")
    probe = np.unique(np.linspace(0, a.n_rows - 1, num=min(a.n_rows, 4096)).astype(np.int64))
    if not np.array_equal(a.token_rows(probe), b.token_rows(probe)):
        raise ConfigError("the dense cache holds other tokens than the latent cache",
                          hint="extract both with the same --data, --tokens, --ctx and --positions")


def _model_and_tokenizer(reader: Any, model: Any, tokenizer: Any) -> tuple[Any, Any, str]:
    """The model (for W_U) and tokenizer: given, else the manifest's model via interp.models; a note when missing."""
    ident = reader.manifest.identity
    name = ident.get("model_source") or ident.get("model")
    note = ""
    if model is False:
        model, note = None, "no logit effects: skipped (model=False)"
    elif model is None and not name:
        note = "no logit effects: the cache names no model"
    elif model is None:
        try:
            from interp.models import load

            model = load(name, ident.get("checkpoint"))
        except (InterpError, OSError, ValueError) as e:
            note = f"no logit effects: the cache's model {name!r} did not load ({getattr(e, 'message', e)})"
    if tokenizer is None and model is not None:
        tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None and name:
        try:
            from interp.models import load_tokenizer

            tokenizer = load_tokenizer(name)
        except (InterpError, OSError, ValueError):
            tokenizer = None
    return model, tokenizer, note


def build_browser(sae: str | Path | Any, cache: str | Path, out: str | Path, *, hook: str | None = None,
                  model: Any = None, tokenizer: Any = None, dense_cache: str | Path | None = None,
                  k_top: int = 20, n_bins: int = 64, n_quantiles: int = 8, per_quantile: int = 4,
                  n_neighbours: int = 10, n_logits: int = 10, left: int = 8, right: int = 4,
                  device: str = "auto", backend: str = "auto", latent_chunk: int = 64, index_chunk: int = 4096,
                  seed: int = 0, return_data: bool = False) -> Path | tuple[Path, LatentData, Extras]:
    """Build the latent browser of `sae`'s latents stored sparsely in `cache` into the folder `out`.

    model: None loads the cache manifest's model for logit effects (skipped with a note if it fails), False skips
    them, or pass the model. tokenizer: None takes the model's (or the manifest model's); an HF tokenizer, a list of
    token strings or a callable id -> str also work. Memory: O(d_sae · (k_top + n_quantiles · per_quantile +
    n_bins)) plus one shard, the weights and one chunk of contexts (see interp.browser.collect).

    A transcoder (`interp.transcoders`) is browsed at its input hook, whose rows its latents encode; its decoder
    writes the output hook, so logit effects are W_dec · W_U when d_out is d_model, and the SAE-error correlation
    uses its prediction error ‖y − ŷ‖ at the output hook (`transcoder_dense_source`)."""
    from interp.cache import open_cache

    reader = open_cache(cache)
    lat_hook = latent_hook(reader, hook, sae)
    h_in, h_out, tc = sae_hooks(sae)
    if tc and h_out and lat_hook == h_out != h_in:
        raise ConfigError(f"the latents at {lat_hook} are at the transcoder's output hook; it reads {h_in} and "
                          f"predicts {h_out}", hint=f"extract its latents with --hooks {h_in} --sae ... --sparse topk")
    weights = load_sae_weights(sae)
    d_sae = int(reader.spec(lat_hook)["d_sae"])
    if weights["W_dec"].shape[0] != d_sae:
        raise ConfigError(f"the SAE has {weights['W_dec'].shape[0]} latents, hook {lat_hook} stores {d_sae}",
                          hint="pass the SAE the cache was extracted with (--sae)")
    dev = pick_device(device)
    dense_in = None
    if tc:  # the error is the prediction error at the output hook
        widths = (int(weights["W_skip"].shape[1]) if "W_skip" in weights else 0, int(weights["W_dec"].shape[1]))
        dense, dense_in, err_note = transcoder_dense_source(reader, dense_cache, h_in or lat_hook, h_out, widths,
                                                            "W_skip" in weights)
    else:
        dense, err_note = dense_source(reader, dense_cache, h_in, lat_hook)
    mdl, tok, logit_note = _model_and_tokenizer(reader, model, tokenizer)  # before the passes: a load fails fast
    w_dev = {k: v.to(dev) for k, v in weights.items()}
    data = collect(reader, lat_hook, k_top=k_top, n_bins=n_bins, n_quantiles=n_quantiles, per_quantile=per_quantile,
                   device=dev, backend=backend, seed=seed, dense=dense, sae_weights=w_dev, dense_in=dense_in)
    ids, cos = decoder_neighbours(weights["W_dec"], n_neighbours, device=dev)
    W_U = unembedding(mdl) if mdl is not None else None
    if mdl is not None and W_U is None:
        logit_note = "no logit effects: the model has no unembedding (W_U)"
    elif W_U is not None and W_U.shape[0] != weights["W_dec"].shape[1]:
        logit_note, W_U = ((f"no logit effects: the transcoder's d_out {weights['W_dec'].shape[1]} (at {h_out}) is "
                            f"not the model's d_model {W_U.shape[0]}") if tc else
                           (f"no logit effects: the SAE's d_in {weights['W_dec'].shape[1]} is not the model's "
                            f"d_model {W_U.shape[0]} (not a residual-stream SAE)")), None
    logits = None if W_U is None else {k: v.numpy() for k, v in
                                       logit_effects(weights["W_dec"], W_U, n_logits, device=dev).items()}
    name = Path(str(sae)).name if isinstance(sae, (str, Path)) else type(sae).__name__
    ident = reader.manifest.identity
    where = lat_hook if not tc else f"transcoder: {lat_hook} \u2192 {h_out or '?'}"
    err_is = "" if not tc else (f"; its SAE error is the prediction error \u2016y \u2212 \u0177\u2016 at "
                                f"{h_out or 'the output hook'}")
    err_label = (f"the prediction-error norm \u2016y \u2212 \u0177\u2016 at {h_out or 'the output hook'}" if tc
                 else "the SAE-error norm")
    ex = Extras((ids.numpy(), cos.numpy()), logits, {"logit": logit_note, "err": err_note, "err_label": err_label},
                {"title": f"latent browser: {name}",
                 "subtitle": (f"{where} of {ident.get('model', '?')} over {reader.n_rows:,} tokens ({reader.path})"
                              + err_is),
                 "params": {"k_top": k_top, "n_bins": n_bins, "n_quantiles": n_quantiles,
                            "per_quantile": per_quantile, "seed": seed}})
    index = write_site(out, reader, lat_hook, data, ex, token_namer(tok), left=left, right=right,
                       latent_chunk=latent_chunk, index_chunk=index_chunk)
    return (index.parent, data, ex) if return_data else index.parent


class Site:
    """The built site: `path`, and `_repr_html_` showing it in an iframe (Jupyter serves files relative to the
    notebook, so the iframe works when the site lies under the notebook's folder)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"Site({self.path / 'index.html'})"

    def iframe(self, width: str = "100%", height: int = 700) -> Any:
        """An IPython IFrame of the site (relative path when under the working folder)."""
        from IPython.display import IFrame

        target = self.path / "index.html"
        try:
            target = target.resolve().relative_to(Path.cwd().resolve())
        except ValueError:
            pass
        return IFrame(str(target), width=width, height=height)

    def _repr_html_(self) -> str:
        return self.iframe()._repr_html_()


def browse(sae: str | Path | Any, cache: str | Path, out: str | Path = "browser", **kwargs: Any) -> Site:
    """Jupyter entry point: build the site (see build_browser) and return it (`site.path`, shown as an iframe)."""
    return Site(build_browser(sae, cache, out, **kwargs))
