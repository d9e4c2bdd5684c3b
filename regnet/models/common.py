"""Small helpers shared by the model files."""

from __future__ import annotations

import itertools

import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}


def activation(name: str) -> nn.Module:
    """``nn.Module`` for an activation name; one-line error listing the accepted names."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation={name!r} is unknown: use one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def check_dropout(p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout={p!r} is invalid: it must lie in [0, 1]")
    return float(p)


def conv_out(size: int, kernel: int, padding: int = 0, stride: int = 1) -> int:
    """Spatial size after a convolution or pooling layer."""
    return (size + 2 * padding - kernel) // stride + 1


def check_fits(model: str, image_size: int, feature_size: int) -> None:
    if feature_size < 1:
        raise ValueError(
            f"model {model} does not fit {image_size}×{image_size} inputs (feature map would be empty): "
            "use a larger image size (data.pad) or another model"
        )


def device_of(module: nn.Module, default: torch.device | str = "cpu") -> torch.device:
    """The device of a module's first parameter (else buffer); ``default`` for a module with neither."""
    first = next(itertools.chain(module.parameters(), module.buffers()), None)
    return first.device if first is not None else torch.device(default)
