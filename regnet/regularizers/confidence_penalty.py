"""Confidence penalty (Pereyra et al. 2017, "Regularizing Neural Networks by Penalizing Confident Output
Distributions", Eq. 2): adds −β · H(p(·|x)), the negative entropy of the predictive distribution, averaged
over the batch, so low-entropy (over-confident) predictions cost more."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from regnet.regularizers.base import Members, Regularizer, check_positive, per_member


def entropy(logits: Tensor) -> Tensor:
    """H(softmax(logits)) per sample: (..., C) → (...)."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


class ConfidencePenalty(Regularizer):
    name = "confidence_penalty"
    per_member = ("beta",)

    def __init__(self, beta: float = 0.1):
        self.beta = check_positive("reg.confidence_penalty.beta", beta)

    def member_penalty(self, model: nn.Module, inputs, logits: Tensor, targets, members: Members) -> Tensor:
        """logits (N, S, K) → (S,): −β_s · mean_n H(p(·|x_n))."""
        h = entropy(logits).mean(0)  # (S,)
        return -per_member(self.beta, h) * h
