"""Negative log-likelihood of outputs that already are log-probabilities: −1/N Σ_n Σ_c q_nc ℓ_nc.

convnet_ablation's network ended in ``F.log_softmax`` (``model=convnet model.log_softmax=true loss=nll``); on
those outputs NLL equals the cross-entropy of the logits. On raw logits it is not a loss (it would push the
target logit to +∞): pair it only with a model that emits log-probabilities.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from regnet.losses.base import BatchMeanLoss


def nll(log_probs: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
    """log_probs (M, C); targets (M,) int64 or (M, C) probabilities; per sample (M,) or their mean."""
    if targets.ndim == 1:
        return F.nll_loss(log_probs, targets, reduction=reduction)
    per_sample = -(targets.to(log_probs.dtype) * log_probs).sum(dim=1)
    return per_sample.mean() if reduction == "mean" else per_sample


class NLL(BatchMeanLoss):
    name = "nll"
    per_sample = nll
