"""Negative log-likelihood of outputs that already are log-probabilities: −1/N Σ_n Σ_c q_nc ℓ_nc.

convnet_ablation's network ended in ``F.log_softmax`` (``model=convnet model.log_softmax=true loss=nll``); on
those outputs NLL equals the cross-entropy of the logits. On raw logits it is not a loss (it would push the
target logit to +∞): pair it only with a model that emits log-probabilities.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


class NLL:
    name = "nll"

    def __call__(self, log_probs: Tensor, targets: Tensor) -> Tensor:
        """log_probs (N, C); targets (N,) int64 or (N, C) probabilities."""
        if targets.ndim == 1:
            return F.nll_loss(log_probs, targets)
        return -(targets.to(log_probs.dtype) * log_probs).sum(dim=1).mean()

    def __repr__(self) -> str:
        return "NLL()"
