"""RandomHorizontalFlip: mirror each image left–right with probability ``p`` (one ``torch.where``)."""

from __future__ import annotations

import torch
from torch import Tensor

from regnet.augment.kernels import hflip_batch


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5):
        if not 0 <= p <= 1:
            raise ValueError(f"data.augment: RandomHorizontalFlip p={p!r} is invalid: it must lie in [0, 1]")
        self.p = float(p)

    def __call__(self, x: Tensor, g: torch.Generator) -> Tensor:
        return hflip_batch(x, torch.rand(len(x), generator=g, device=g.device) < self.p)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"
