"""Elastic net (Zou & Hastie 2005, "Regularization and variable selection via the elastic net", Eq. 3): λ₁ · Σ|w|
in the loss plus an L2 term as the optimizer's weight decay (``weight_decay`` = λ₂ adds λ₂·w to the gradient,
i.e. minimises λ₂/2 · ‖w‖²), exactly as ``reg=[l1,l2]`` would. The L1 part covers the weight matrices
(``weight_matrices``, as ``l1``); weight decay covers every parameter, as ``l2``.
"""

from __future__ import annotations

from torch import Tensor, nn

from regnet.regularizers.base import Members, Regularizer, check_positive, per_member
from regnet.regularizers.l1 import l1_norm


class Elastic(Regularizer):
    """Adds ``l1 · Σ|w|`` to the loss and hands ``weight_decay`` to the optimizer."""

    name = "elastic"
    per_member = ("l1",)  # its weight decay is each member's own, as l2's

    def __init__(self, l1: float = 1e-5, weight_decay: float = 5e-4):
        self.l1 = check_positive("reg.elastic.l1", l1)
        self.weight_decay = check_positive("reg.elastic.weight_decay", weight_decay)

    def member_penalty(self, model: nn.Module, inputs, logits, targets, members: Members) -> Tensor:
        norm = l1_norm(model, "reg.elastic")  # (S,)
        return per_member(self.l1, norm) * norm
