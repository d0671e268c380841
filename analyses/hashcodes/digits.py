"""ReLU MLPs trained on scikit-learn's bundled `load_digits` (no downloads), with two optimiser schedules.

'sklearn': the schedule behind the spec's measured digits table (MLPClassifier defaults): Glorot-uniform init of
weights and biases (bound sqrt(6 / (fan_in + fan_out))), Adam lr 1e-3, batch min(200, n), L2 alpha 1e-4 as
alpha/2 * ||W||² / batch, stop when the epoch loss fails to improve by 1e-4 for more than 10 epochs, <= 500 epochs.
'paper': the reference's Keras schedule (run_layer_width_train_mlp.py): Glorot-uniform kernels, zero biases,
Adam lr 1e-2 decayed x0.1 every 20 epochs, batch 64, L2 1e-6 * ||W||², EarlyStopping(loss, patience=10), <= 200.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from interp.errors import ConfigError

SCHEDULES = ("sklearn", "paper")


@dataclass
class DigitsData:
    """The digits split: X scaled /16 (float32 tensors), integer labels, stratified 80/20 (random_state=0)."""

    X_train: torch.Tensor
    y_train: np.ndarray
    X_test: torch.Tensor
    y_test: np.ndarray


def load_digits_split(test_size: float = 0.2, split_seed: int = 0) -> DigitsData:
    """scikit-learn digits /16 with a stratified split (1437 train / 360 test at the defaults)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=test_size, stratify=y, random_state=split_seed)
    f = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return DigitsData(f(Xtr), ytr.astype(np.int64), f(Xte), yte.astype(np.int64))


def make_mlp(d_in: int, width: int, n_classes: int = 10, depth: int = 1, batchnorm: bool = False,
             init: str = "glorot", bias_init: str = "uniform", seed: int = 0) -> torch.nn.Sequential:
    """Linear -> (BatchNorm) -> ReLU, `depth` times, then Linear to logits; `width` = num_neuron // depth."""
    if width < 1 or depth < 1:
        raise ConfigError(f"width and depth must be >= 1 (got {width}, {depth})", hint="use positive integers")
    g = torch.Generator().manual_seed(seed)
    layers: list[torch.nn.Module] = []
    fan = d_in
    for _ in range(depth):
        layers.append(torch.nn.Linear(fan, width))
        if batchnorm:
            layers.append(torch.nn.BatchNorm1d(width, momentum=0.01, eps=1e-3))  # Keras momentum 0.99, eps 1e-3
        layers.append(torch.nn.ReLU())
        fan = width
    layers.append(torch.nn.Linear(fan, n_classes))
    model = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for m in model:
            if not isinstance(m, torch.nn.Linear):
                continue
            if init == "glorot":
                bound = math.sqrt(6.0 / (m.in_features + m.out_features))
                m.weight.uniform_(-bound, bound, generator=g)
                if bias_init == "uniform":
                    m.bias.uniform_(-bound, bound, generator=g)
                else:
                    m.bias.zero_()
            elif init == "torch":
                bound = 1.0 / math.sqrt(m.in_features)
                m.weight.uniform_(-bound, bound, generator=g)  # kaiming_uniform(a=sqrt(5)) == U(±1/sqrt(fan_in))
                m.bias.uniform_(-bound, bound, generator=g)
            else:
                raise ConfigError(f"unknown init '{init}'", hint="use 'glorot' (reference) or 'torch'")
    return model


@torch.inference_mode()
def accuracy(model: torch.nn.Module, X: torch.Tensor, y: np.ndarray) -> float:
    """Classification accuracy of the network itself (eval mode)."""
    model.eval()
    param = next(iter(model.parameters()))
    return float((model(X.to(param.dtype)).argmax(1).numpy() == y).mean())
