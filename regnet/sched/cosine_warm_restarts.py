"""Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter 2017, Eq. 5): the lr follows a cosine
from lr_0 down to ``eta_min`` over T_i steps, then jumps back to lr_0; T_0 = ``T_0``, T_{i+1} = T_mult·T_i.

mnist_small_cnns stepped it per batch: T_0 250, T_mult 2 (LeNetDeep) and T_0 1000, T_mult 1 (SimpleNet, its best
run).
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts


def cosine_warm_restarts(
    optimizer: Optimizer, *, total_steps: int, T_0: int = 1000, T_mult: int = 1, eta_min: float = 0.0
) -> CosineAnnealingWarmRestarts:
    if not isinstance(T_0, int) or T_0 < 1:
        raise ValueError(f"sched.scheduler.T_0={T_0!r} is invalid: use a positive integer number of steps")
    if not isinstance(T_mult, int) or T_mult < 1:
        raise ValueError(f"sched.scheduler.T_mult={T_mult!r} is invalid: use an integer ≥ 1")
    return CosineAnnealingWarmRestarts(optimizer, T_0=T_0, T_mult=T_mult, eta_min=eta_min)
