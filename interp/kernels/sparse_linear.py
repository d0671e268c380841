"""Input-sparse linear layer (TEAL/CATS): skip weight rows whose input channel is zero or below a threshold."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from interp.errors import ConfigError
from interp.kernels.backend import choose, triton_kernels

LINEAR_BACKENDS = ("triton", "dense")
MAX_KERNEL_BATCH = 4  # rows per kernel launch (the OR of per-sample masks erodes sparsity beyond this)
AUTO_MAX_BATCH = 1  # 'auto' uses the kernel for one row only: at 2 and 4 rows it measured slower than dense


def to_column_major(weight: Tensor) -> Tensor:
    """The same `[out, in]` weight stored column-major (`weight.t()` contiguous), as the kernel wants."""
    return weight.t().contiguous().t()


def is_column_major(weight: Tensor) -> bool:
    """True when input channels are contiguous rows of memory (`stride(0) == 1`)."""
    return weight.dim() == 2 and weight.stride(0) == 1 and (weight.shape[1] == 1 or weight.stride(1) >= weight.shape[0])


def sparse_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, *, threshold: float | None = None,
                  backend: str = "auto", config: dict | None = None) -> Tensor:
    """`F.linear(x * (|x| > threshold), weight, bias)`; threshold None keeps every nonzero input channel.

    'auto' uses the Triton split-K kernel on CUDA for a single row with a column-major weight (see
    `to_column_major`) and a threshold, and dense `F.linear` otherwise (batches, prefill, CPU, row-major
    weights, threshold None); backend='triton' runs the kernel for any number of rows, 4 per launch.
    """
    if weight.dim() != 2 or x.shape[-1] != weight.shape[1]:
        raise ConfigError(f"x {tuple(x.shape)} does not match weight {tuple(weight.shape)}",
                          hint="weight is [out, in] and x is [..., in]")
    if x.dtype != weight.dtype or (bias is not None and bias.dtype != weight.dtype):
        got = f"x {x.dtype}, weight {weight.dtype}" + (f", bias {bias.dtype}" if bias is not None else "")
        raise ConfigError(f"sparse_linear needs one dtype, got {got}", hint="cast them, e.g. weight.to(x.dtype)")
    t = 0.0 if threshold is None else float(threshold)
    if t < 0:
        raise ConfigError(f"threshold {t} < 0", hint="thresholds apply to |x| and must be ≥ 0")
    if x.is_floating_point():  # torch compares |x| > t in x's dtype: round t the same way so both paths agree
        t = float(torch.tensor(t, dtype=x.dtype))
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    be = choose("sparse_linear", backend, x.device, LINEAR_BACKENDS, cpu_default="dense")
    if be == "triton" and backend == "auto" and (x2.shape[0] > AUTO_MAX_BATCH or not is_column_major(weight)
                                                  or threshold is None):
        be = "dense"  # H200, 1 row: the kernel ties plain F.linear at 0 % sparsity and is 1.6x at 50 %; 2-4 rows lose
    if be == "dense":
        xm = x2 if threshold is None else x2 * (x2.abs() > t)
        return F.linear(xm, weight, bias).reshape(*lead, weight.shape[0])
    if not is_column_major(weight):
        raise ConfigError("the Triton input-sparse kernel needs a column-major weight",
                          hint="convert once with interp.kernels.to_column_major(weight)")
    wt = weight.t()  # [in, out] with unit column stride
    x2 = x2.contiguous()
    bias = bias.contiguous() if bias is not None else None  # the kernel reads bias with unit stride
    tk = triton_kernels()
    parts = [tk.sparse_gemv(x2[i:i + MAX_KERNEL_BATCH], wt, bias, t, config)
             for i in range(0, x2.shape[0], MAX_KERNEL_BATCH)]
    y = parts[0] if len(parts) == 1 else torch.cat(parts)
    return y.reshape(*lead, weight.shape[0])


def magnitude_threshold(x: Tensor, sparsity: float) -> float:
    """The |x| quantile that zeroes a `sparsity` fraction of channels (TEAL's histogram thresholds, per tensor)."""
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity {sparsity} outside [0, 1)", hint="pass a fraction such as 0.5")
    if sparsity == 0.0:
        return 0.0
    return float(torch.quantile(x.detach().abs().float().reshape(-1), sparsity))
