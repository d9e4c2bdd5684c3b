"""Step decay at fractions of training: lr × gamma at each milestone (hoffman2019_mnist: 1/3 and 2/3)."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import MultiStepLR


def multistep(optimizer: Optimizer, *, total_steps: int, milestones: list[float], gamma: float = 0.1) -> MultiStepLR:
    """``milestones`` are fractions in (0, 1) of ``total_steps``, e.g. [1/3, 2/3] of 150,000 → 50,000, 100,000."""
    bad = [m for m in milestones if not 0 < m < 1]
    if bad:
        raise ValueError(
            f"sched.scheduler.milestones={list(milestones)} is invalid: give fractions of training in (0, 1)"
        )
    steps = sorted({max(1, round(m * total_steps)) for m in milestones})
    return MultiStepLR(optimizer, milestones=steps, gamma=gamma)
