"""Training losses by name (``loss=`` at the top level of the config).

Each maps (logits (N, C), targets (N,) int64) to a scalar.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    return F.cross_entropy(logits, targets)


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"cross_entropy": cross_entropy}


def get_loss(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    if name not in LOSSES:
        raise ValueError(f"loss={name!r} is unknown: use one of {sorted(LOSSES)}")
    return LOSSES[name]
