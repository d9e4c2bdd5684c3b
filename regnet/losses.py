"""Training losses by name (``loss=`` at the top level of the config).

Each maps (model outputs (N, C), targets (N,) int64) to a scalar, averaged over the batch.

- ``cross_entropy``: softmax cross-entropy on logits (seeds 000, 001, 004).
- ``nll``: negative log-likelihood of outputs that already are log-probabilities, as seed 003's network
  ended in ``F.log_softmax`` (``model=convnet model.log_softmax=true loss=nll``). On raw logits it is not
  a loss (it would push the target logit to +∞): pair it only with a model that emits log-probabilities.
- ``bce_onehot``: seed 002's ``Softmax`` + ``BCELoss`` against one-hot targets,
  −1/(N·C) Σ_n Σ_c [y_nc log p_nc + (1 − y_nc) log(1 − p_nc)], p = softmax(outputs). Computed in float32
  outside autocast (``F.binary_cross_entropy`` refuses low precision), with torch's clamp of log at −100.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    return F.cross_entropy(logits, targets)


def nll(log_probs: Tensor, targets: Tensor) -> Tensor:
    return F.nll_loss(log_probs, targets)


def bce_onehot(logits: Tensor, targets: Tensor) -> Tensor:
    with torch.autocast(device_type=logits.device.type, enabled=False):
        probs = F.softmax(logits.float(), dim=1)  # (N, C)
        onehot = F.one_hot(targets, num_classes=logits.shape[1]).float()  # (N, C)
        return F.binary_cross_entropy(probs, onehot)


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "cross_entropy": cross_entropy,
    "nll": nll,
    "bce_onehot": bce_onehot,
}


def get_loss(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    if name not in LOSSES:
        raise ValueError(f"loss={name!r} is unknown: use one of {sorted(LOSSES)}")
    return LOSSES[name]
