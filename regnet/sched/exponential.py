"""Exponential decay: lr × gamma after every interval (lenet5_lecun: 0.9 per epoch)."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import ExponentialLR


def exponential(optimizer: Optimizer, *, total_steps: int, gamma: float = 0.9) -> ExponentialLR:
    if not 0 < gamma <= 1:
        raise ValueError(f"sched.scheduler.gamma={gamma!r} is invalid: it must lie in (0, 1]")
    return ExponentialLR(optimizer, gamma=gamma)
