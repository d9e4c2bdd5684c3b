"""Softmax cross-entropy on logits: −1/N Σ_n Σ_c q_nc log softmax(z_n)_c, q the one-hot target (or a target
distribution). The loss of hoffman2019_mnist, cifar100_resnet18 and mnist_small_cnns."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from regnet.losses.base import batch_mean


class CrossEntropy:
    name = "cross_entropy"

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        """logits (N, C) or (N, S, C); targets (N,)/(N, S) int64 or (N, C)/(N, S, C) probabilities; () or (S,)."""
        return batch_mean(F.cross_entropy, logits, targets)

    def __repr__(self) -> str:
        return "CrossEntropy()"
