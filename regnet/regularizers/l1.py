"""L1 regularization (Tibshirani 1996, "Regression shrinkage and selection via the lasso", in its
Lagrangian form): λ · Σ_w |w| over every weight matrix (``weight_matrices``: Conv/Linear weights, and LeNet-5's
sparse C3 as ``weight · mask``).

Biases and normalisation parameters (1-D tensors) are not penalised, as is usual for weight decay.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from regnet.regularizers.base import Regularizer, check_positive, weight_matrices


def l1_norm(model: nn.Module, regularizer: str = "reg.l1") -> Tensor:
    """Σ |w| over ``weight_matrices(model)`` (a differentiable scalar)."""
    return torch.stack([w.abs().sum() for _, _, w in weight_matrices(model, regularizer)]).sum()


class L1(Regularizer):
    """Adds ``lam · Σ|w|`` to the loss."""

    name = "l1"

    def __init__(self, lam: float = 1e-5):
        self.lam = check_positive("reg.l1.lam", lam)

    def penalty(self, model: nn.Module, inputs: Tensor, logits: Tensor, targets: Tensor) -> Tensor:
        return self.lam * l1_norm(model)
