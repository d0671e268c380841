"""SAEs saved by other libraries, read into sae-lens SAEs so that every interp tool (evals, browser, interventions,
sparse encoding) takes them: EleutherAI's sparsify, Gemma Scope's `params.npz`, and saprmarks' dictionary_learning.

Each reader maps the library's weights onto one of these sae-lens forms, with encode/decode equal to the library's
own (in exact arithmetic; the tests check float64 references written from each library's code):

    standard  f = ReLU((x − b_dec·a) W_enc + b_enc)                  x̂ = f W_dec + b_dec   (a = apply_b_dec_to_input)
    topk      f = TopK_k(ReLU(...)) with the same pre-activation     (TopK of ReLU = ReLU of TopK on the kept values)
    jumprelu  f = ReLU(h) · [h > θ],  h = (x − b_dec·a) W_enc + b_enc
    topk_transcoder        f = TopK_k(ReLU(x W_enc + b_enc)), ŷ = f W_dec + b_dec predicts another hook's output
    topk_skip_transcoder   the same, ŷ + x W_skipᵀ           (interp.transcoders: sae-lens has no TopK transcoder)

    sparsify (cfg.json + sae.safetensors; `SparseCoder`): pre = ReLU(encoder(x − b_dec)), top-k; x̂ = top W_dec +
        b_dec. W_dec is stored [num_latents, d_in] (sae-lens 6.54's own `sparsify_disk_loader` transposes it and
        fails on this layout). Transcoders (`transcode: true`): pre = ReLU(encoder(x)) with no b_dec on the input,
        top-k; ŷ = top W_dec + b_dec (+ x W_skipᵀ with `skip_connection`, W_skip [d_out, d_in] as sae-lens'
        SkipTranscoder stores it): a TopKTranscoder / TopKSkipTranscoder. An SAE with `skip_connection` but no
        `transcode`, signed and non-top-k activations are refused.
    Gemma Scope (params.npz): h = x W_enc + b_enc, f = ReLU(h)·[h > θ], x̂ = f W_dec + b_dec; no b_dec on the input.
        npz is read with allow_pickle=False.
    dictionary_learning (config.json + ae.safetensors): AutoEncoder (ReLU, b_dec = `bias`), AutoEncoderTopK (per-row
        top-k), BatchTopKSAE (inference form: ReLU(h)·[ReLU(h) > t] with one scalar t, equal to JumpReLU with θ = t
        for t ≥ 0, and to ReLU while t < 0, i.e. never calibrated), JumpReluAutoEncoder (its features are scaled by
        the decoder row norms n: f = n·ReLU(h)·[h > θ], x̂ = (f/n) W_dec + b_dec; folded exactly as W_enc·n, b_enc·n,
        θ·n, W_dec/n). Its `ae.pt` is a pickle, which interp never opens: the error says how to convert it once.

Hooks: a sae-lens folder names its own. Otherwise the reader infers one where the source says it unambiguously
(sparsify's `layers.N` folder = the block's output, `blocks.N.hook_resid_post`; Gemma Scope's `layer_N` under a
`-res` release; dictionary_learning's `resid_post_layer_N`) and else asks for `hook=`. A sparsify transcoder reads its
module's input and predicts its output: `layers.N.mlp` is blocks.N.ln2.hook_normalized -> blocks.N.hook_mlp_out,
`layers.N` is blocks.N.hook_resid_pre -> blocks.N.hook_resid_post; elsewhere it asks for `hook=` and `hook_out=`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from interp.errors import ConfigError, ModelNotFoundError

FORMATS = ("sae_lens", "sparsify", "gemma_scope", "dictionary_learning")


@dataclass
class ForeignSAE:
    """An SAE read from another library, in sae-lens' layout: W_enc [d_in, d_sae], W_dec [d_sae, d_in]."""

    source_format: str
    architecture: str  # "standard" | "topk" | "jumprelu" | "topk_transcoder" | "topk_skip_transcoder"
    state: dict[str, torch.Tensor]  # W_enc, b_enc, W_dec, b_dec (+ threshold for jumprelu, W_skip), float32
    apply_b_dec_to_input: bool
    k: int | None = None
    hook: str | None = None
    hook_out: str | None = None  # a transcoder's output hook (None for SAEs)
    notes: list[str] = field(default_factory=list)

    @property
    def d_in(self) -> int:
        return int(self.state["W_enc"].shape[0])

    @property
    def d_sae(self) -> int:
        return int(self.state["W_enc"].shape[1])

    @property
    def is_transcoder(self) -> bool:
        return self.architecture.endswith("transcoder")


def detect_format(path: str | Path) -> str:
    """Which library wrote the SAE folder `path` (one of FORMATS); ModelNotFoundError when none did."""
    path = Path(path)
    if (path / "sae_weights.safetensors").is_file() and (path / "cfg.json").is_file():
        return "sae_lens"
    if (path / "sae.safetensors").is_file() and (path / "cfg.json").is_file():
        return "sparsify"
    if (path / "params.npz").is_file() or path.suffix == ".npz":
        return "gemma_scope"
    if (path / "config.json").is_file() and any((path / n).is_file() for n in ("ae.safetensors", "ae.pt")):
        return "dictionary_learning"
    found = ", ".join(sorted(p.name for p in path.iterdir())[:8]) if path.is_dir() else "not a folder"
    raise ModelNotFoundError(
        f"{path} is not an SAE folder interp can read ({found})",
        hint="sae-lens (cfg.json + sae_weights.safetensors), sparsify (cfg.json + sae.safetensors), Gemma Scope "
             "(params.npz) or dictionary_learning (config.json + ae.safetensors)")


def read_foreign(path: str | Path, hook: str | None = None, hook_out: str | None = None) -> ForeignSAE:
    """The SAE at `path` (a sparsify, Gemma Scope or dictionary_learning folder) in sae-lens' layout; `hook_out`
    names a transcoder's output hook where the folder does not."""
    path = Path(path)
    fmt = detect_format(path)
    reader = {"sparsify": _read_sparsify, "gemma_scope": _read_gemma_scope,
              "dictionary_learning": _read_dictionary_learning}.get(fmt)
    if reader is None:
        raise ConfigError(f"{path} is a sae-lens folder", hint="load it with interp.saes.load_sae")
    sae = reader(path)
    sae.hook = hook or sae.hook
    if not sae.hook:
        raise ConfigError(f"{path} ({fmt}) does not say which hook it was trained on",
                          hint="pass hook=, e.g. hook='blocks.6.hook_resid_post' (interp saes import --hook)")
    if sae.is_transcoder:
        sae.hook_out = hook_out or sae.hook_out
        if not sae.hook_out:
            raise ConfigError(f"{path} is a transcoder that does not say which hook it predicts",
                              hint="pass hook_out=, e.g. hook_out='blocks.6.hook_mlp_out'")
    return sae


def foreign_entries(folder: str | Path, hook: str | None = None, hook_out: str | None = None) -> list[dict]:
    """sae_entries() rows for a non-sae-lens SAE folder, or a folder of them ([] when it holds none); `hook`
    (and a transcoder's `hook_out`) name the hooks where the folders do not."""
    folder = Path(folder)
    if folder.suffix == ".npz" and folder.is_file():
        candidates = [folder]
    elif not folder.is_dir() or (folder / "cfg.json").is_file() and not (folder / "sae.safetensors").is_file():
        return []
    else:
        candidates = [folder] if _is_foreign(folder) else sorted(p for p in folder.iterdir() if _is_foreign(p))
    rows = []
    for path in candidates:
        sae = read_foreign(path, hook, hook_out)
        rows.append({"name": path.name, "hook": sae.hook, "abs_path": str(path), "d_sae": sae.d_sae,
                     "architecture": sae.architecture, "source_format": sae.source_format,
                     **({"hook_out": sae.hook_out} if sae.is_transcoder else {})})
    return rows


def _is_foreign(path: Path) -> bool:
    try:
        return path.is_dir() and detect_format(path) != "sae_lens"
    except ModelNotFoundError:
        return False


def to_sae_lens(foreign: ForeignSAE, *, device: str = "cpu", dtype: str = "float32") -> Any:
    """A sae-lens inference SAE with the foreign SAE's weights (its `metadata.hook_name` set, and a transcoder's
    `metadata.hook_name_out`)."""
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig, StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    if foreign.is_transcoder:
        from interp import transcoders

        skip = foreign.architecture == "topk_skip_transcoder"
        cls, cfg_cls = ((transcoders.TopKSkipTranscoder, transcoders.TopKSkipTranscoderConfig) if skip
                        else (transcoders.TopKTranscoder, transcoders.TopKTranscoderConfig))
        tc = cls(cfg_cls(d_in=foreign.d_in, d_sae=foreign.d_sae, d_out=int(foreign.state["W_dec"].shape[1]),
                         k=int(foreign.k), dtype=dtype, device=device, apply_b_dec_to_input=False,
                         metadata=SAEMetadata(hook_name=foreign.hook, hook_name_out=foreign.hook_out)))
        tc.load_state_dict({k: v.to(torch.float32) for k, v in foreign.state.items()})
        return tc.to(device=device, dtype=getattr(torch, dtype)).eval()
    common = dict(d_in=foreign.d_in, d_sae=foreign.d_sae, dtype=dtype, device=device,
                  apply_b_dec_to_input=foreign.apply_b_dec_to_input,
                  metadata=SAEMetadata(hook_name=foreign.hook),
                  reshape_activations="hook_z" if str(foreign.hook).endswith("hook_z") else "none")
    if foreign.architecture == "topk":
        sae = TopKSAE(TopKSAEConfig(k=int(foreign.k), **common))
    elif foreign.architecture == "jumprelu":
        sae = JumpReLUSAE(JumpReLUSAEConfig(**common))
    else:
        sae = StandardSAE(StandardSAEConfig(**common))
    sae.load_state_dict({k: v.to(torch.float32) for k, v in foreign.state.items()})
    return sae.to(device=device, dtype=getattr(torch, dtype)).eval()


def _safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v.to(torch.float32) for k, v in load_file(str(path)).items()}


def _need(state: dict, keys: tuple[str, ...], where: Path) -> None:
    missing = [k for k in keys if k not in state]
    if missing:
        raise ConfigError(f"{where} lacks {', '.join(missing)} (has {', '.join(sorted(state))[:200]})",
                          hint="is it an SAE of the library its folder layout suggests?")


def _read_sparsify(path: Path) -> ForeignSAE:
    cfg = json.loads((path / "cfg.json").read_text())
    transcode = bool(cfg.get("transcode"))
    for flag, why in (("skip_connection", "an SAE's W_skip term has no sae-lens equivalent; only transcoders' has"),
                      ("signed", "signed top-k keeps negative latents, which no sae-lens form does")):
        if cfg.get(flag) and not (flag == "skip_connection" and transcode):
            raise ConfigError(f"{path}: sparsify {flag}=true is not an SAE interp can splice ({why})",
                              hint="use a sparsify SAE without it (or a transcoder, transcode=true)")
    if cfg.get("activation", "topk") != "topk":
        raise ConfigError(f"{path}: sparsify activation {cfg['activation']!r} is not supported",
                          hint="only top-k sparsify SAEs convert exactly")
    state = _safetensors(path / "sae.safetensors")
    _need(state, ("encoder.weight", "encoder.bias", "W_dec", "b_dec"), path / "sae.safetensors")
    if transcode:
        return _sparsify_transcoder(path, cfg, state)
    match = re.fullmatch(r"(?:model\.)?(?:layers|h|gpt_neox\.layers)\.(\d+)", path.name)
    return ForeignSAE("sparsify", "topk",
                      {"W_enc": state["encoder.weight"].T.contiguous(), "b_enc": state["encoder.bias"],
                       "W_dec": state["W_dec"], "b_dec": state["b_dec"]},
                      apply_b_dec_to_input=True, k=int(cfg["k"]),
                      hook=f"blocks.{match.group(1)}.hook_resid_post" if match else None,
                      notes=[f"sparsify hookpoint {path.name}"])


def _sparsify_transcoder(path: Path, cfg: dict, state: dict[str, torch.Tensor]) -> ForeignSAE:
    """A sparsify transcoder: SparseCoder.encode skips the b_dec shift when transcoding; W_skip [d_out, d_in] is
    added as x @ W_skip.mT, which is sae-lens' SkipTranscoder term x @ W_skip.T with the same layout."""
    weights = {"W_enc": state["encoder.weight"].T.contiguous(), "b_enc": state["encoder.bias"],
               "W_dec": state["W_dec"], "b_dec": state["b_dec"]}
    skip = bool(cfg.get("skip_connection"))
    if skip:
        _need(state, ("W_skip",), path / "sae.safetensors")
        weights["W_skip"] = state["W_skip"]
    match = re.fullmatch(r"(?:model\.)?(?:layers|h|gpt_neox\.layers)\.(\d+)(\.mlp)?", path.name)
    hooks: tuple[str | None, str | None] = (None, None)
    if match and match.group(2):  # the MLP module: its input is the post-attention norm's output
        hooks = (f"blocks.{match.group(1)}.ln2.hook_normalized", f"blocks.{match.group(1)}.hook_mlp_out")
    elif match:  # the whole block: the residual stream before it -> after it
        hooks = (f"blocks.{match.group(1)}.hook_resid_pre", f"blocks.{match.group(1)}.hook_resid_post")
    return ForeignSAE("sparsify", "topk_skip_transcoder" if skip else "topk_transcoder", weights,
                      apply_b_dec_to_input=False, k=int(cfg["k"]), hook=hooks[0], hook_out=hooks[1],
                      notes=[f"sparsify transcoder at hookpoint {path.name} (its input -> its output)"])


def _read_gemma_scope(path: Path) -> ForeignSAE:
    import numpy as np

    file = path if path.suffix == ".npz" else path / "params.npz"
    with np.load(file, allow_pickle=False) as z:
        state = {k: torch.from_numpy(np.asarray(z[k], dtype=np.float32)) for k in z.files}
    _need(state, ("W_enc", "W_dec", "b_enc", "b_dec", "threshold"), file)
    layer = re.search(r"layer_(\d+)", str(path))
    hook = f"blocks.{layer.group(1)}.hook_resid_post" if layer and re.search(r"-res\b|-res-|_res\b", str(path)) \
        else None
    return ForeignSAE("gemma_scope", "jumprelu", {k: state[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec",
                                                                          "threshold")},
                      apply_b_dec_to_input=False, hook=hook)


def _read_dictionary_learning(path: Path) -> ForeignSAE:
    if not (path / "ae.safetensors").is_file():
        raise ConfigError(
            f"{path} holds ae.pt, a pickle, which interp never opens (it can run code)",
            hint="convert it once where you trust the file: import torch, safetensors.torch as st; "
                 "st.save_file({k: v.contiguous() for k, v in torch.load('ae.pt', weights_only=True).items()}, "
                 "'ae.safetensors')")
    trainer = json.loads((path / "config.json").read_text()).get("trainer", {})
    kind = str(trainer.get("dict_class", ""))
    state = _safetensors(path / "ae.safetensors")
    sub = str(trainer.get("submodule_name") or "")
    layer = re.fullmatch(r"resid_post_layer_(\d+)", sub)
    hook = f"blocks.{layer.group(1)}.hook_resid_post" if layer else None
    if kind == "JumpReluAutoEncoder":
        _need(state, ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"), path / "ae.safetensors")
        n = state["W_dec"].norm(dim=1)  # the feature scale it multiplies in and divides out again
        if not bool((n > 0).all()):
            raise ConfigError(f"{path}: a decoder row has norm 0, so its feature scale cannot be folded",
                              hint="drop the dead latents first")
        folded = {"W_enc": state["W_enc"] * n, "b_enc": state["b_enc"] * n, "threshold": state["threshold"] * n,
                  "W_dec": state["W_dec"] / n[:, None], "b_dec": state["b_dec"]}
        return ForeignSAE("dictionary_learning", "jumprelu", folded, apply_b_dec_to_input=False, hook=hook,
                          notes=["JumpReluAutoEncoder: decoder norms folded into encoder, threshold and decoder"])
    if kind not in ("AutoEncoder", "AutoEncoderTopK", "BatchTopKSAE"):
        raise ConfigError(f"{path}: dictionary_learning class {kind or '(none)'} is not supported",
                          hint="supported: AutoEncoder, AutoEncoderTopK, BatchTopKSAE, JumpReluAutoEncoder")
    bias = "bias" if kind == "AutoEncoder" else "b_dec"
    _need(state, ("encoder.weight", "encoder.bias", "decoder.weight", bias), path / "ae.safetensors")
    weights = {"W_enc": state["encoder.weight"].T.contiguous(), "b_enc": state["encoder.bias"],
               "W_dec": state["decoder.weight"].T.contiguous(), "b_dec": state[bias]}
    if kind == "AutoEncoderTopK":
        k = int(state["k"].item()) if "k" in state else int(trainer["k"])
        return ForeignSAE("dictionary_learning", "topk", weights, apply_b_dec_to_input=True, k=k, hook=hook)
    if kind == "BatchTopKSAE":
        t = float(state["threshold"].item()) if "threshold" in state else -1.0
        if t >= 0:
            weights["threshold"] = torch.full((weights["W_enc"].shape[1],), t)
            return ForeignSAE("dictionary_learning", "jumprelu", weights, apply_b_dec_to_input=True, hook=hook,
                              notes=[f"BatchTopKSAE at inference: one threshold {t:g} for every latent"])
        return ForeignSAE("dictionary_learning", "standard", weights, apply_b_dec_to_input=True, hook=hook,
                          notes=["BatchTopKSAE with no calibrated threshold (< 0): ReLU at inference"])
    return ForeignSAE("dictionary_learning", "standard", weights, apply_b_dec_to_input=True, hook=hook)
