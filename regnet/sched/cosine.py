"""Cosine annealing (Loshchilov & Hutter 2017, Eq. 5 without restarts):
lr_t = eta_min + (lr_0 − eta_min)(1 + cos(π t / T_max)) / 2.

mnist_small_cnns stepped it per batch with T_max = 1000 (``interval: step``), far shorter than training: PyTorch's
``CosineAnnealingLR`` then keeps following the cosine, back up to lr_0 at 2·T_max, and so on.
``T_max: null`` anneals once over the whole run (``total_steps``).
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR


def cosine(
    optimizer: Optimizer, *, total_steps: int, T_max: int | None = None, eta_min: float = 0.0
) -> CosineAnnealingLR:
    t_max = total_steps if T_max is None else T_max
    if not isinstance(t_max, int) or t_max < 1:
        raise ValueError(f"sched.scheduler.T_max={T_max!r} is invalid: use a positive integer or null (whole run)")
    return CosineAnnealingLR(optimizer, T_max=t_max, eta_min=eta_min)
