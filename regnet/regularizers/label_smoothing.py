"""Label smoothing (Szegedy et al. 2016, "Rethinking the Inception Architecture", Sec. 7): train against
q' = (1 − ε)·onehot(y) + ε/C instead of the one-hot target, whichever loss is in use (``loss=``).

The regularizer adds ``loss(outputs, q') − loss(outputs, y)`` as its penalty, so the total training loss is the
chosen loss against the smoothed targets: ``F.cross_entropy(logits, y, label_smoothing=ε)`` for
``loss=cross_entropy``, BCE of the softmax against q' for ``loss=bce_onehot``, NLL of the log-probabilities
against q' for ``loss=nll``. Every loss here is linear in its target, so the penalty is
ε · (loss(outputs, uniform) − loss(outputs, y)). ε must lie in (0, 1): ε = 1 trains against uniform
targets, which carry no label at all (a run that learns nothing). Every loss of ``regnet/losses`` takes a target
distribution, with or without a member axis, so label smoothing works with each of them, stacked or not.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from regnet.losses import get_loss
from regnet.regularizers.base import Members, Regularizer, per_member


class LabelSmoothing(Regularizer):
    name = "label_smoothing"
    per_member = ("eps",)
    shared = ("loss",)  # the run's loss; a stack's members share it

    def __init__(self, eps: float = 0.1, loss=None):
        """``loss``: the run's loss (``conf/reg/label_smoothing.yaml`` passes ``${loss}``); cross-entropy if None."""
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
            raise ValueError(
                f"reg.label_smoothing.eps={eps!r} is invalid: it must lie in (0, 1) "
                "(eps=1 trains against uniform targets, which carry no label)"
            )
        self.eps = float(eps)
        self.loss = get_loss(loss if loss is not None else "cross_entropy")

    def member_penalty(self, model: nn.Module, inputs, logits: Tensor, targets: Tensor, members: Members) -> Tensor:
        """logits (N, S, K), targets (N, S) → (S,): loss(outputs, q'_s) − loss(outputs, y), per member."""
        outputs = logits.float()  # (N, S, K)
        k = outputs.shape[-1]
        onehot = F.one_hot(targets, k).float()  # (N, S, K)
        smoothed = per_member(1 - self.eps, onehot, dim=1) * onehot + per_member(self.eps / k, onehot, dim=1)
        return self.loss(outputs, smoothed) - self.loss(outputs, targets)
