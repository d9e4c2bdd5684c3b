"""Label smoothing (Szegedy et al. 2016, "Rethinking the Inception Architecture", Sec. 7): train against
q' = (1 − ε)·onehot(y) + ε/C instead of the one-hot target. Cross-entropy is linear in the target, so

    CE(q', p) = CE(y, p) + ε · (mean_c(−log p_c) − CE(y, p)),

and the regularizer adds the second term as a penalty: the total loss equals
``F.cross_entropy(logits, y, label_smoothing=ε)`` when the main loss is cross-entropy.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from regnet.regularizers.base import Regularizer


class LabelSmoothing(Regularizer):
    name = "label_smoothing"

    def __init__(self, eps: float = 0.1):
        if not 0 < eps <= 1:
            raise ValueError(f"reg.label_smoothing.eps={eps!r} is invalid: it must lie in (0, 1]")
        self.eps = float(eps)

    def penalty(self, model: nn.Module, inputs: Tensor, logits: Tensor, targets: Tensor) -> Tensor:
        log_p = F.log_softmax(logits.float(), dim=-1)  # (N, C)
        uniform = -log_p.mean(dim=-1)  # (N,) cross-entropy against the uniform distribution
        nll = F.nll_loss(log_p, targets, reduction="none")  # (N,)
        return self.eps * (uniform - nll).mean()
