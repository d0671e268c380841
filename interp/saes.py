"""Sparse autoencoders through sae-lens: load (local folder, or release name when a hub is reachable; other
libraries' folders through interp.sae_formats), save compactly, reconstruct, and list a folder of SAEs. Training is
interp.sae_training.

    sae = load_sae("data/saes/toy-pythia-4l/L2_resid_topk_x8")           # local sae-lens folder
    sae = load_sae("gemma-scope-2b-pt-res", sae_id="layer_12/width_16k/average_l0_82")  # needs a hub
    recon, l0 = reconstruct(sae, acts)                                   # [N, d], [N]; a transcoder's: [N, d_out]
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from interp.errors import ConfigError, HubUnavailableError, ModelNotFoundError


def _hub_offline() -> bool:
    flags = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes") for k in flags)


def load_sae(source: str | os.PathLike, sae_id: str | None = None, *, device: str = "cpu",
             dtype: str = "float32", hook: str | None = None, hook_out: str | None = None) -> Any:
    """A sae-lens SAE from a local folder (cfg.json + sae_weights.safetensors) or a release name via the hub.

    Folders written by sparsify, Gemma Scope (params.npz) or dictionary_learning (ae.safetensors) load too,
    converted exactly (`interp.sae_formats`); `hook` names their hook where the folder does not (and `hook_out` a
    transcoder's output hook). Transcoders load as sae-lens transcoders (`interp.transcoders`)."""
    from sae_lens import SAE

    import interp.transcoders  # noqa: F401  (registers the TopK transcoders with sae-lens' loader)
    from interp.sae_formats import detect_format, read_foreign, to_sae_lens

    path = Path(source)
    if path.exists() and detect_format(path) != "sae_lens":
        return to_sae_lens(read_foreign(path, hook, hook_out), device=device, dtype=dtype)
    if path.is_dir():
        if not (path / "cfg.json").is_file():
            raise ModelNotFoundError(f"{path} has no cfg.json", hint="point at a folder written by sae.save_model()")
        return SAE.load_from_disk(str(path), device=device, dtype=dtype)
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    name = str(source)
    if name not in directory and "/" not in name:
        raise ModelNotFoundError(f"'{name}' is neither a local SAE folder nor a known sae-lens release",
                                 hint="pass a folder with cfg.json, or a release from sae-lens' pretrained_saes.yaml")
    if sae_id is None:
        known = list(directory[name].saes_map)[:5] if name in directory else []
        raise ConfigError(f"release '{name}' needs an sae_id", hint=f"e.g. {', '.join(known) or 'see the release'}")
    if _hub_offline():
        raise HubUnavailableError(f"loading release '{name}' needs the Hugging Face hub, which is switched off",
                                  hint="unset HF_HUB_OFFLINE or download the SAE and pass its local folder")
    try:
        return SAE.from_pretrained(name, sae_id, device=device, dtype=dtype)
    except (OSError, ConnectionError) as e:  # network or missing files
        raise HubUnavailableError(f"could not fetch '{name}/{sae_id}' from the hub: {e}",
                                  hint="check the connection, or pass a local SAE folder") from e


@contextlib.contextmanager
def flat_rows(sae: Any) -> Iterator[Any]:
    """Within the block the SAE takes and returns flattened [N, d_in] rows, as every interp function hands it.

    A hook_z SAE (`reshape_activations: hook_z`) otherwise expects [.., heads, d_head] and would fold a 2-D batch
    into its features; its mode is restored afterwards, so sae-lens can still splice it into a model per head.
    """
    on = bool(getattr(sae, "hook_z_reshaping_mode", False))
    if on:
        sae.turn_off_forward_pass_hook_z_reshaping()
    try:
        yield sae
    finally:
        if on:
            sae.turn_on_forward_pass_hook_z_reshaping()


def save_sae(sae: Any, path: str | os.PathLike, *, storage_dtype: str = "float16",
             metadata: dict[str, Any] | None = None) -> Path:
    """Save an (inference) SAE as a sae-lens folder; weights stored in `storage_dtype` (loaded back as float32)."""
    import json

    from safetensors.torch import load_file, save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    saver = getattr(sae, "save_inference_model", None) or sae.save_model
    weights_path, cfg_path = saver(str(path))
    if storage_dtype != "float32":
        dt = {"float16": torch.float16, "bfloat16": torch.bfloat16}[storage_dtype]
        st = load_file(str(weights_path))
        save_file({k: v.to(dt).contiguous() for k, v in st.items()}, str(weights_path))
    cfg = json.loads(Path(cfg_path).read_text())
    if "dtype" in cfg:
        cfg["dtype"] = "float32"  # sae-lens loads in this dtype: a bf16-trained SAE still loads back as float32
    if metadata:
        cfg.setdefault("metadata", {}).update(metadata)
        if str(metadata.get("hook_name", "")).endswith("hook_z"):  # sae-lens then takes [.., heads, d_head] input
            cfg["reshape_activations"] = "hook_z"
    Path(cfg_path).write_text(json.dumps(cfg, indent=2))
    return path


@torch.no_grad()
def reconstruct(sae: Any, acts: torch.Tensor, *, batch_size: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Sae(x) = decode(encode(x)) [N, d] and the per-row L0 [N] (float32, no grad); for a transcoder, x are rows of
    its input hook and the result predicts its OUTPUT hook: decode(encode(x)) + x W_skipᵀ [N, d_out]."""
    from interp.transcoders import is_transcoder, predict

    if is_transcoder(sae):
        return predict(sae, acts, batch_size=batch_size)
    if acts.dim() != 2 or acts.shape[1] != sae.cfg.d_in:
        raise ConfigError(f"activations {tuple(acts.shape)} do not match the SAE's d_in={sae.cfg.d_in}",
                          hint="pass [N, d_in] activations from the hook the SAE was trained on")
    recons, l0s = [], []
    param = next(sae.parameters())
    with flat_rows(sae):
        for s in range(0, acts.shape[0], batch_size):
            x = acts[s:s + batch_size].to(param.device, param.dtype)
            f = sae.encode(x)
            recons.append(sae.decode(f).float())
            l0s.append((f != 0).sum(-1).float())
    return torch.cat(recons), torch.cat(l0s)


@torch.no_grad()
def effective_decoder(sae: Any, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(D [d_sae, d_out], b [d_out]) with decode(f) = f @ D + b, probed from `decode` itself (float32); d_out = d_in
    for an SAE. A skip transcoder's x W_skipᵀ is no part of decode (`interp.transcoders.skip_term`).

    Covers options that rescale codes inside decode (e.g. TopK's rescale_acts_by_decoder_norm), so code-space
    maths (pursuit, feature ablation) uses the dictionary the SAE really applies. Probed on a float32 copy on the
    SAE's device: in bf16 each row would be rounded together with b_dec before b_dec is taken off again.
    """
    import copy

    n = int(sae.cfg.d_sae)
    device = next(sae.parameters()).device
    probe = sae if next(sae.parameters()).dtype == torch.float32 else copy.deepcopy(sae).float()
    with flat_rows(probe):
        b = probe.decode(torch.zeros(1, n, device=device)).float()[0]
        rows = [probe.decode(torch.eye(n, device=device)[s:s + chunk]).float() - b for s in range(0, n, chunk)]
    return torch.cat(rows), b


def load_index(folder: str | os.PathLike) -> dict:
    """The SAE index (index.json) of a folder of sae-lens SAEs, each entry with its absolute `abs_path`."""
    import json

    folder = Path(folder)
    path = folder / "index.json"
    if not path.is_file():
        raise ConfigError(f"no SAE index at {path}",
                          hint="build them: python -m apps.build.saes, or pass saes=<folder>")
    try:
        index = json.loads(path.read_text())
        for e in index.get("saes", []):
            e["abs_path"] = str(folder / e["path"])
    except (ValueError, TypeError, KeyError, AttributeError) as err:  # ValueError covers JSON and UTF-8 errors
        raise ConfigError(f"SAE index {path} is damaged ({type(err).__name__}: {err})",
                          hint="rebuild it: python -m apps.build.saes, or pass saes=<folder>") from None
    return index


def sae_entries(source: str | os.PathLike) -> list[dict]:
    """[{name, hook, abs_path, ...}] for a folder with an index.json of SAEs, for one sae-lens SAE folder, or for
    SAE folders of another library (one, or a folder of them as sparsify writes: one per hookpoint)."""
    import json

    from interp.sae_formats import foreign_entries

    folder = Path(source)
    if (folder / "index.json").is_file():
        return list(load_index(folder)["saes"])
    foreign = foreign_entries(folder)
    if foreign:
        return foreign
    cfg_path = folder / "cfg.json"
    if not cfg_path.is_file():
        raise ConfigError(f"{folder} is neither an SAE folder (cfg.json) nor a folder of SAEs (index.json)",
                          hint="pass a sae-lens SAE folder, or a folder with an index.json of them")
    try:
        cfg = json.loads(cfg_path.read_text())
    except ValueError as err:
        raise ConfigError(f"{cfg_path} is not JSON ({err})", hint="re-save the SAE with interp.saes.save_sae") from None
    hook = (cfg.get("metadata") or {}).get("hook_name") or cfg.get("hook_name")
    if not hook:
        raise ConfigError(f"{cfg_path} names no hook (metadata.hook_name)", hint="re-save it with its hook name")
    hook_out = (cfg.get("metadata") or {}).get("hook_name_out")
    return [{"name": folder.name, "hook": hook, "abs_path": str(folder), "d_sae": cfg.get("d_sae"),
             "architecture": cfg.get("architecture", ""), **({"hook_out": hook_out} if hook_out else {})}]
