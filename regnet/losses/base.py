"""What every loss shares: the mean over the batch, with or without a member axis.

A loss is written once, as a function of per-sample outputs (M, K) and targets (M,) or (M, K) with torch's
``reduction`` argument; :func:`batch_mean` makes it a loss of an ordinary run's outputs (N, K) (torch's own
mean, the plain case) or of a stack's (N, S, K), one mean per member, (S,) (regnet/stacked). A member axis of
one is the plain case too, so a stack of one computes exactly what an ordinary run computes.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor


def batch_mean(loss: Callable[..., Tensor], outputs: Tensor, targets: Tensor) -> Tensor:
    """``loss(outputs, targets, reduction=...)`` averaged over the batch: outputs (N, K) → (); outputs (N, S, K)
    with targets (N, S) or (N, S, K) → (S,), each member's mean over its own N samples (and K, where ``loss``
    averages over the classes too)."""
    if outputs.dim() == 2:
        return loss(outputs, targets, reduction="mean")
    n, s = outputs.shape[:2]
    if s == 1:
        return loss(outputs[:, 0], targets[:, 0], reduction="mean").unsqueeze(0)
    per_sample = loss(outputs.flatten(0, 1), targets.flatten(0, 1), reduction="none")  # (N·S,) or (N·S, K)
    return per_sample.view(n, s, -1).mean(dim=(0, 2))


class BatchMeanLoss:
    """A loss given by its per-sample function ``per_sample(outputs, targets, reduction=...)`` (:func:`batch_mean`)."""

    name: str = ""
    per_sample: Callable[..., Tensor]

    def __call__(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """outputs (N, C) or (N, S, C); targets (N,)/(N, S) int64 or (N, C)/(N, S, C) probabilities; () or (S,)."""
        return batch_mean(type(self).per_sample, outputs, targets)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


__all__ = ["BatchMeanLoss", "batch_mean"]
