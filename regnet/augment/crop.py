"""RandomCrop(size = the image's, padding): zero-pad every side by ``padding`` pixels, crop back at a random
offset per image (cifar_crop_flip, He et al. 2016, §4.2). One gather."""

from __future__ import annotations

import torch
from torch import Tensor

from regnet.augment.kernels import crop_batch


class RandomCrop:
    def __init__(self, padding: int = 4):
        if not isinstance(padding, int) or padding < 0:
            raise ValueError(f"data.augment: RandomCrop padding={padding!r} is invalid: it must be an integer ≥ 0")
        self.padding = padding

    def __call__(self, x: Tensor, g: torch.Generator) -> Tensor:
        n, p = len(x), self.padding
        top = torch.randint(0, 2 * p + 1, (n,), generator=g, device=g.device)
        left = torch.randint(0, 2 * p + 1, (n,), generator=g, device=g.device)
        return crop_batch(x, p, top, left)

    def __repr__(self) -> str:
        return f"RandomCrop(padding={self.padding})"
