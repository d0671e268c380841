"""The shipped modular-addition transformers (data/lib/modadd_seed*.safetensors) and their data set.

Weights were trained by `python -m apps.build.modadd` (see data/lib/*.json for the run log); here they are
loaded into a transformer-lens `HookedTransformer` (no LayerNorm, 1 layer) for hooks and LIB sections.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from interp.errors import ModelNotFoundError

P = 113
DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "lib"
SHIPPED_SEEDS = (0, 1, 2)


MODADD_CFG = {
    "n_layers": 1, "d_model": 128, "n_heads": 4, "d_head": 32, "d_mlp": 512, "d_vocab": 114,
    "d_vocab_out": 114, "n_ctx": 3, "act_fn": "relu", "normalization_type": None,
    "positional_embedding_type": "standard", "attn_only": False,
}


def split_indices(seed: int, p: int = 113, frac_train: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Train/test split of the p*p pairs (index = x*p + y) from a PCG64 permutation seeded by `seed`."""
    perm = np.random.default_rng(seed).permutation(p * p)
    n_train = int(frac_train * p * p)
    return np.sort(perm[:n_train]), np.sort(perm[n_train:])


def pairs_to_tokens(idx: np.ndarray, p: int = 113) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair indices -> tokens [n, 3] = (x, y, p) and labels (x + y) mod p."""
    idx_t = torch.as_tensor(idx, dtype=torch.long)
    x, y = idx_t // p, idx_t % p
    tokens = torch.stack([x, y, torch.full_like(x, p)], dim=1)
    return tokens, (x + y) % p



def modadd_path(seed: int) -> Path:
    """Path of the shipped weights for `seed`."""
    return DATA_DIR / f"modadd_seed{seed}.safetensors"


def load_modadd(seed: int = 0, dtype: torch.dtype = torch.float32):
    """HookedTransformer with the shipped mod-113 addition weights of `seed` (tokens [x, y, 113])."""
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    path = modadd_path(seed)
    if not path.is_file():
        raise ModelNotFoundError(f"no shipped modular-addition model for seed {seed}",
                                 hint=f"shipped seeds: {SHIPPED_SEEDS}; train more with python -m apps.build.modadd")
    cfg = HookedTransformerConfig(**MODADD_CFG, dtype=dtype, device="cpu", seed=seed)
    model = HookedTransformer(cfg)
    state = {k: v.to(dtype) for k, v in load_file(str(path)).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    bad = [k for k in missing if not k.endswith(("IGNORE", "mask"))]
    if bad or unexpected:
        raise ModelNotFoundError(f"{path} does not match the mod-add config (missing {bad}, unexpected {unexpected})",
                                 hint="retrain with python -m apps.build.modadd")
    model.eval()
    return model


def modadd_meta(seed: int) -> dict:
    """The training record (accuracies, epochs, device) stored next to the weights."""
    path = DATA_DIR / f"modadd_seed{seed}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def modadd_data(seed: int, split: str) -> tuple[Tensor, Tensor]:
    """Tokens [n, 3] and labels for split 'train' (30%), 'test' (70%) or 'all' (x-major grid) of `seed`."""
    if split == "all":
        return pairs_to_tokens(np.arange(P * P), P)
    tr, te = split_indices(seed, P, 0.3)
    return pairs_to_tokens(tr if split == "train" else te, P)


class ModAddWeights(torch.nn.Module):
    """Weights-only stand-in for the HookedTransformer (no transformer-lens needed): enough for LIB sections."""

    def __init__(self, seed: int = 0, dtype: torch.dtype = torch.float64):
        from types import SimpleNamespace

        from safetensors.torch import load_file

        super().__init__()
        path = modadd_path(seed)
        if not path.is_file():
            raise ModelNotFoundError(f"no shipped modular-addition model for seed {seed}",
                                     hint=f"shipped seeds: {SHIPPED_SEEDS}")
        self.cfg = SimpleNamespace(**MODADD_CFG, attn_scale=MODADD_CFG["d_head"] ** 0.5, use_attn_scale=True,
                                   attention_dir="causal", gated_mlp=False, parallel_attn_mlp=False, eps=1e-5)
        self._w = {k: v.to(dtype) for k, v in load_file(str(path)).items()}
        self.blocks = [SimpleNamespace(mlp=SimpleNamespace(act_fn=torch.relu))]

    def state_dict(self, *args, **kwargs) -> dict[str, Tensor]:  # type: ignore[override]
        return dict(self._w)
