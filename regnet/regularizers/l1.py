"""L1 regularization (Tibshirani 1996, "Regression shrinkage and selection via the lasso", in its
Lagrangian form): λ · Σ_w |w| over every weight matrix (``weight_matrices``: Conv/Linear weights, and LeNet-5's
sparse C3 as ``weight · mask``).

Biases and normalisation parameters (1-D tensors) are not penalised, as is usual for weight decay.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from regnet.regularizers.base import WeightPenalty, member_weight_matrices


def l1_norm(model: nn.Module, regularizer: str = "reg.l1") -> Tensor:
    """Σ |w| over each member's ``weight_matrices`` (differentiable), (S,); S = 1 for an ordinary model."""
    return torch.stack([w.abs().flatten(1).sum(1) for _, _, w in member_weight_matrices(model, regularizer)]).sum(0)


class L1(WeightPenalty):
    """Adds ``lam · Σ|w|`` to the loss."""

    name = "l1"

    def __init__(self, lam: float = 1e-5):
        super().__init__(lam)

    def measure(self, model: nn.Module) -> Tensor:
        return l1_norm(model)
