"""Training losses, one file each, chosen with ``loss=<name>`` (``conf/loss/<name>.yaml``).

A loss maps model outputs (N, C) and targets to a scalar averaged over the batch. Targets are class indices
(N,) int64, or a distribution over the classes (N, C) float, rows summing to 1 (what ``reg=label_smoothing``
trains against): every loss here is linear in its target, so a distribution is the matching mixture of
one-hot targets. Each is written once over an optional member axis (``base.batch_mean``): outputs (N, S, C) of
a stack give one loss per member, (S,).

- ``cross_entropy``: softmax cross-entropy on logits (hoffman2019_mnist, cifar100_resnet18, mnist_small_cnns).
- ``nll``: negative log-likelihood of outputs that already are log-probabilities (convnet_ablation).
- ``bce_onehot``: softmax + binary cross-entropy against one-hot targets (lenet5_lecun).
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from regnet.losses.bce_onehot import BCEOneHot
from regnet.losses.cross_entropy import CrossEntropy
from regnet.losses.nll import NLL


class Loss(Protocol):
    def __call__(self, outputs: Tensor, targets: Tensor) -> Tensor: ...


LOSSES: dict[str, type] = {cls.name: cls for cls in (CrossEntropy, NLL, BCEOneHot)}


def get_loss(loss) -> Loss:
    """The loss a config chose: a ``conf/loss/<name>.yaml`` node (``_target_``), a loss object, or a name
    (configs written before ``loss`` was a config group, e.g. an older run's ``results.json``, said
    ``loss: cross_entropy``)."""
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"loss={loss!r} is unknown: use one of {sorted(LOSSES)}")
        return LOSSES[loss]()
    if callable(loss):
        return loss
    from hydra.utils import instantiate  # a config node

    return instantiate(loss)


__all__ = ["LOSSES", "BCEOneHot", "CrossEntropy", "Loss", "NLL", "get_loss"]
