"""Confidence penalty (Pereyra et al. 2017, "Regularizing Neural Networks by Penalizing Confident Output
Distributions", Eq. 2): adds −β · H(p(·|x)), the negative entropy of the predictive distribution, averaged
over the batch, so low-entropy (over-confident) predictions cost more."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from regnet.regularizers.base import Regularizer, check_positive


def entropy(logits: Tensor) -> Tensor:
    """H(softmax(logits)) per sample: (N, C) → (N,)."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


class ConfidencePenalty(Regularizer):
    name = "confidence_penalty"

    def __init__(self, beta: float = 0.1):
        self.beta = check_positive("reg.confidence_penalty.beta", beta)

    def penalty(self, model: nn.Module, inputs: Tensor, logits: Tensor, targets: Tensor) -> Tensor:
        return -self.beta * entropy(logits).mean()
