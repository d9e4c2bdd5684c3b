"""Cyclical learning rates (Smith 2017, "Cyclical Learning Rates for Training Neural Networks"): the lr
moves linearly between ``base_lr`` and ``max_lr`` and back, ``step_size_up`` steps up and
``step_size_down`` (default: the same) steps down; ``triangular2`` halves the amplitude after every cycle.

mnist_small_cnns (stepped per batch, Adam, so ``cycle_momentum: false``): base 1e-4, max 1e-3 (triangular) or
1e-2 (triangular2), step_size_up 2,500 ("10 × batch size" at batch 250) or 1,000. ``CyclicLR`` overwrites
the optimizer's lr with ``base_lr`` when it is built, so ``optim.lr`` does not matter here.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CyclicLR

MODES = ("triangular", "triangular2", "exp_range")


def cyclic(
    optimizer: Optimizer,
    *,
    total_steps: int,
    base_lr: float = 1e-4,
    max_lr: float = 1e-3,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
    cycle_momentum: bool = False,
) -> CyclicLR:
    if mode not in MODES:
        raise ValueError(f"sched.scheduler.mode={mode!r} is unknown: use one of {list(MODES)}")
    if not 0 < base_lr <= max_lr:
        raise ValueError(
            f"sched.scheduler.base_lr={base_lr!r}, max_lr={max_lr!r} are invalid: need 0 < base_lr ≤ max_lr"
        )
    if step_size_up < 1:
        raise ValueError(f"sched.scheduler.step_size_up={step_size_up!r} is invalid: use a positive number of steps")
    return CyclicLR(
        optimizer, base_lr=base_lr, max_lr=max_lr, step_size_up=step_size_up, step_size_down=step_size_down,
        mode=mode, gamma=gamma, cycle_momentum=cycle_momentum,
    )  # fmt: skip
