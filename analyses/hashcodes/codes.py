"""Neural codes: the on/off pattern of hidden ReLU-like units, bit-packed (He et al. 2021, arXiv 2101.05490 §2).

A sample's code is the concatenation over layers of `activation > threshold` for every hidden ReLU-like unit
(ReLU: threshold 0; GELU/SiLU, e.g. transformer `blocks.*.mlp.hook_post`: threshold 0 is exactly the sign of
the pre-activation since GELU(x) > 0 <=> x > 0). Units constant over the fit set are dropped (reference:
train ∪ test, `compute_activation_code_for_mlp`), and codes are stored bit-packed (8 codes bits per byte).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from interp.errors import ConfigError

RELU_LIKE = (torch.nn.ReLU, torch.nn.ReLU6, torch.nn.LeakyReLU, torch.nn.PReLU, torch.nn.ELU, torch.nn.GELU,
             torch.nn.SiLU, torch.nn.Mish, torch.nn.Softplus, torch.nn.CELU, torch.nn.SELU)


def relu_like_modules(model: torch.nn.Module) -> list[str]:
    """Module paths of every ReLU-like activation module in registration order (the reference's Activations)."""
    names = [n for n, m in model.named_modules() if n and isinstance(m, RELU_LIKE)]
    if not names:
        raise ConfigError(f"{type(model).__name__} has no ReLU-like activation modules",
                          hint="pass hooks=[module paths] whose outputs are the hidden units (F.relu cannot be hooked)")
    return names


def capture_units(model: torch.nn.Module, inputs: torch.Tensor, hooks: Sequence[str],
                  batch_size: int | None = 4096) -> torch.Tensor:
    """Hidden activations `[N, n_units]` at module paths `hooks`, flattened per sample and concatenated in order."""
    from interp.capture import capture  # swap point: the toolkit's capture (module-path hooks, early stop)

    param = next(iter(model.parameters()), None)
    if param is not None and inputs.is_floating_point() and param.is_floating_point():
        inputs = inputs.to(param.dtype)  # a float64-trained module gets float64 inputs
    was_training = model.training
    model.eval()  # BatchNorm uses running statistics, as Keras predict does
    try:
        acts = capture(model, inputs, hooks=list(hooks), batch_size=batch_size)
    finally:
        model.train(was_training)
    return torch.cat([acts[h].reshape(acts[h].shape[0], -1) for h in hooks], dim=1)


def binarize(acts: torch.Tensor | np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """{0,1} uint8 codes `[N, n_units]` = activation > threshold (reference: `> 0` on post-ReLU outputs)."""
    a = acts.detach().cpu().numpy() if isinstance(acts, torch.Tensor) else np.asarray(acts)
    return (a > threshold).astype(np.uint8)


def nonconstant_mask(*code_sets: np.ndarray) -> np.ndarray:
    """Bool `[n_units]`: units that are on for some and off for some sample of the union of `code_sets`."""
    if not code_sets:
        raise ConfigError("nonconstant_mask needs at least one code array", hint="pass train (and test) codes")
    any_on = np.zeros(code_sets[0].shape[1], dtype=bool)
    any_off = np.zeros_like(any_on)
    for c in code_sets:
        if c.ndim != 2 or c.shape[1] != any_on.shape[0]:
            raise ConfigError(f"code arrays must be [N, {any_on.shape[0]}], got {c.shape}",
                              hint="compute all code sets from the same hooks")
        any_on |= c.any(axis=0)
        any_off |= ~c.astype(bool).all(axis=0)
    return any_on & any_off


def drop_constant(codes_train: np.ndarray, codes_test: np.ndarray | None = None,
                  fit_on: str = "union") -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Remove constant units; fit_on='union' (train ∪ test, reference-exact) or 'train' (no test leakage)."""
    if fit_on not in ("union", "train"):
        raise ConfigError(f"fit_on must be 'union' or 'train', got '{fit_on}'",
                          hint="'union' reproduces the reference, 'train' avoids test leakage")
    sets = [codes_train] if fit_on == "train" or codes_test is None else [codes_train, codes_test]
    keep = nonconstant_mask(*sets)
    return codes_train[:, keep], (codes_test[:, keep] if codes_test is not None else None), keep


@dataclass
class PackedCodes:
    """Bit-packed codes: `words` uint64 `[N, ceil(n_bits/64)]` (little bit order, zero padded) and `n_bits`."""

    words: np.ndarray
    n_bits: int

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.words.shape[0])

    @property
    def nbytes(self) -> int:
        """Storage in bytes (8 bytes per 64 code bits)."""
        return int(self.words.nbytes)

    def unpack(self) -> np.ndarray:
        """The {0,1} uint8 codes `[N, n_bits]`."""
        as_bytes = np.ascontiguousarray(self.words).view(np.uint8)
        return np.unpackbits(as_bytes, axis=1, count=self.n_bits, bitorder="little")


def pack(codes: np.ndarray) -> PackedCodes:
    """Pack {0,1} codes `[N, n_bits]` into uint64 words (64 bits per word) for popcount distances."""
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ConfigError(f"codes must be 2-D [N, n_bits], got shape {codes.shape}", hint="reshape to [N, bits]")
    n, bits = codes.shape
    n_words = max(1, -(-bits // 64))
    padded = np.zeros((n, n_words * 64), dtype=np.uint8)
    padded[:, :bits] = codes != 0
    words = np.packbits(padded, axis=1, bitorder="little").view(np.uint64)
    return PackedCodes(np.ascontiguousarray(words), int(bits))


def _as_rows(codes: np.ndarray | PackedCodes) -> np.ndarray:
    """One hashable row per sample: a void view of packed bytes (fast np.unique over rows)."""
    words = codes.words if isinstance(codes, PackedCodes) else pack(codes).words
    w = np.ascontiguousarray(words)
    return w.view(np.dtype((np.void, w.dtype.itemsize * w.shape[1]))).ravel()


def redundancy_ratio(codes: np.ndarray | PackedCodes) -> float:
    """RR = (N − #unique codes) / N: the fraction of samples colliding with an earlier sample's code (§1.3)."""
    rows = _as_rows(np.asarray(codes) if not isinstance(codes, PackedCodes) else codes)
    if rows.size == 0:
        raise ConfigError("redundancy_ratio of an empty code set", hint="pass at least one sample")
    return float((rows.size - np.unique(rows).size) / rows.size)


def region_occupancy(codes: np.ndarray | PackedCodes) -> dict[int, int]:
    """Histogram {samples per linear region: number of regions} over the regions the samples occupy."""
    rows = _as_rows(np.asarray(codes) if not isinstance(codes, PackedCodes) else codes)
    _, counts = np.unique(rows, return_counts=True)
    occ, n_regions = np.unique(counts, return_counts=True)
    return {int(o): int(r) for o, r in zip(occ, n_regions)}


def region_labels(codes: np.ndarray | PackedCodes) -> np.ndarray:
    """Int `[N]`: the index of each sample's region (equal codes -> equal index)."""
    rows = _as_rows(np.asarray(codes) if not isinstance(codes, PackedCodes) else codes)
    return np.unique(rows, return_inverse=True)[1].ravel()


def activation_codes(model: torch.nn.Module, X: torch.Tensor, hooks: Sequence[str] | None = None,
                     threshold: float = 0.0, X_test: torch.Tensor | None = None, drop: bool = True,
                     fit_on: str = "union") -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Codes of `X` (and `X_test`) from all ReLU-like modules (or `hooks`): (train, test, kept-unit mask)."""
    hooks = list(hooks) if hooks is not None else relu_like_modules(model)
    c_tr = binarize(capture_units(model, X, hooks), threshold)
    c_te = binarize(capture_units(model, X_test, hooks), threshold) if X_test is not None else None
    if not drop:
        return c_tr, c_te, np.ones(c_tr.shape[1], dtype=bool)
    return drop_constant(c_tr, c_te, fit_on=fit_on)
