"""transformer-lens names (pythia-70m, gpt2, ...) with an optional training-step revision.

Needs a reachable model hub; without one every call fails with a one-line HubUnavailableError that says how
to use a local folder instead.
"""

from __future__ import annotations

import os
import warnings

import torch

from interp.errors import HubUnavailableError, ModelNotFoundError


def official_name(name: str) -> str | None:
    """transformer-lens' official name for `name` (or an alias), or None when it is not one."""
    from transformer_lens import loading_from_pretrained as loading

    try:
        return loading.get_official_model_name(name)
    except ValueError:
        return None


def hub_offline() -> bool:
    return any(os.environ.get(v, "") not in ("", "0", "false") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _unavailable(name: str, err: Exception | None = None) -> HubUnavailableError:
    why = "HF_HUB_OFFLINE is set" if err is None else f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
    return HubUnavailableError(
        f"model '{name}' needs the Hugging Face hub, which is not reachable ({why})",
        hint="download it elsewhere with save_pretrained and pass the local folder, or use an embedded suite",
    )


def hub_checkpoints(name: str) -> list[int]:
    """Training steps of a checkpointed transformer-lens model (Pythia, stanford-crfm); known without the hub."""
    from transformer_lens import loading_from_pretrained as loading

    if official_name(name) is None:
        raise ModelNotFoundError(f"'{name}' is not a transformer-lens model name")
    try:
        labels, _ = loading.get_checkpoint_labels(name)
    except ValueError as e:
        raise ModelNotFoundError(f"'{name}' has no training checkpoints", hint="omit --checkpoint") from e
    except Exception as e:  # a hub listing (NeelNanda models) without network
        raise _unavailable(name, e) from e
    return list(labels)


def load_hub_model(name: str, step: int | None = None, device: str = "cpu", dtype: torch.dtype = torch.float32,
                   processing: bool = False):
    """HookedTransformer for a transformer-lens name at a training step (Pythia `checkpoint_value`)."""
    from transformer_lens import HookedTransformer

    if hub_offline():
        raise _unavailable(name)
    kwargs = {"device": device, "dtype": dtype}
    if step is not None:
        kwargs["checkpoint_value"] = int(step)
    loader = HookedTransformer.from_pretrained if processing else HookedTransformer.from_pretrained_no_processing
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            model = loader(name, **kwargs).eval()
    except (OSError, ConnectionError, TimeoutError) as e:
        raise _unavailable(name, e) from e
    if model.tokenizer is not None:  # transformer-lens' BOS-adding copy: blocks keep the plain text convention
        from interp.sources import SPECIALS_ATTR

        setattr(model.tokenizer, SPECIALS_ATTR, ([], []))
    return model
