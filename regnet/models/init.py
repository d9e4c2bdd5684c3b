"""Weight initialisations: the one Glorot (Xavier) init and the one orthogonal init of the project.

Both act on the *dense* weight layers (``DENSE_LAYERS``: Linear and Conv1d/2d/3d), a convolution's weight taken as
the matrix out × in·k·k. Models call them on themselves (``model.init``); SVB starts from ``orthogonal_init_``
(after ``regnet.regularizers.base.weight_matrices`` has checked that the model has no other weight layer). A
model with other weight layers (LeNet-5's ``SparseConv2d``) initialises those itself.
"""

from __future__ import annotations

import torch
from torch import nn

#: layers whose weight is one dense matrix, out × in·k·k
DENSE_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def dense_layers(model: nn.Module) -> list[nn.Module]:
    """The model's Linear/Conv layers, in ``model.modules()`` order."""
    return [m for m in model.modules() if isinstance(m, DENSE_LAYERS)]


@torch.no_grad()
def glorot_init_(model: nn.Module, *, zero_bias: bool) -> None:
    """Glorot & Bengio 2010 ("Understanding the difficulty of training deep feedforward neural networks", Eq. 16,
    the normalized initialization): every dense weight W ~ U[−a, a] with a = √(6 / (fan_in + fan_out)), a conv's
    fan = channels · k·k. ``zero_bias``: biases to 0 (the ``hoffman2019_mnist`` LeNet), else left as PyTorch drew
    them (the ``convnet_ablation`` study's xavier variant)."""
    for m in dense_layers(model):
        nn.init.xavier_uniform_(m.weight)
        if zero_bias and m.bias is not None:
            nn.init.zeros_(m.bias)


@torch.no_grad()
def orthogonal_init_(model: nn.Module) -> None:
    """Saxe, McClelland & Ganguli 2014 ("Exact solutions to the nonlinear dynamics of learning in deep linear
    neural networks"): every dense weight, as the matrix out × in·k·k, becomes a random (semi-)orthogonal
    matrix, all singular values 1 (what SVB, Jia et al. 2017 Algorithm 1, starts from); biases to 0."""
    for m in dense_layers(model):
        nn.init.orthogonal_(m.weight)  # flattens the trailing dimensions: the out × in·k·k matrix
        if m.bias is not None:
            nn.init.zeros_(m.bias)


__all__ = ["DENSE_LAYERS", "dense_layers", "glorot_init_", "orthogonal_init_"]
