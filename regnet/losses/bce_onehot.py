"""lenet5_lecun's ``Softmax`` + ``BCELoss`` against one-hot targets (LeCun et al. 1998 trained each output
unit as its own two-class problem):

    −1/(N·C) Σ_n Σ_c [q_nc log p_nc + (1 − q_nc) log(1 − p_nc)],   p = softmax(outputs),

q the one-hot target (or a target distribution). Computed in float32 outside autocast
(``F.binary_cross_entropy`` refuses low precision), with torch's clamp of log at −100.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from regnet.losses.base import BatchMeanLoss


def bce_onehot(logits: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
    """logits (M, C); targets (M,) int64 or (M, C) probabilities; per element (M, C) or their mean."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        probs = F.softmax(logits.float(), dim=1)  # (M, C)
        if targets.ndim == 1:
            q = F.one_hot(targets, num_classes=logits.shape[1]).float()  # (M, C)
        else:
            q = targets.float()
        return F.binary_cross_entropy(probs, q, reduction=reduction)


class BCEOneHot(BatchMeanLoss):
    name = "bce_onehot"
    per_sample = bce_onehot
