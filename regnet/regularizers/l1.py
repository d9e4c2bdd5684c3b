"""L1 regularization (Tibshirani 1996, the lasso penalty): λ · Σ_w |w| over every weight tensor.

Biases and normalisation parameters (1-D tensors) are not penalised, as is usual for weight decay.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from regnet.regularizers.base import Regularizer, check_positive


def penalised_weights(model: nn.Module) -> list[Tensor]:
    """Every parameter with ≥ 2 dimensions (Conv/Linear weights); biases and norm scales are excluded."""
    return [p for p in model.parameters() if p.dim() >= 2]


def l1_norm(model: nn.Module) -> Tensor:
    """Σ |w| over ``penalised_weights(model)`` (a differentiable scalar)."""
    weights = penalised_weights(model)
    return torch.stack([w.abs().sum() for w in weights]).sum()


class L1(Regularizer):
    """Adds ``lam · Σ|w|`` to the loss."""

    name = "l1"

    def __init__(self, lam: float = 1e-5):
        self.lam = check_positive("reg.l1.lam", lam)

    def penalty(self, model: nn.Module, inputs: Tensor, logits: Tensor, targets: Tensor) -> Tensor:
        return self.lam * l1_norm(model)
