"""RandomErasing (Zhong et al. 2020): with probability ``p`` set a rectangle of ``scale`` × the image area and
aspect ratio in ``ratio`` to ``value``. Runs after normalisation (value 0 = the mean), as torchvision's."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from regnet.augment.kernels import erase_batch
from regnet.augment.resized_crop_rotate import _uniform


def sample_erasing(n: int, H: int, W: int, g: torch.Generator, p=0.5, scale=(0.02, 0.2), ratio=(0.3, 3.3)):
    area = _uniform(n, *scale, g) * H * W
    logr = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), g)
    h = torch.sqrt(area * torch.exp(logr)).round().long().clamp(1, H - 1)
    w = torch.sqrt(area / torch.exp(logr)).round().long().clamp(1, W - 1)
    top = (torch.rand(n, generator=g, device=g.device) * (H - h + 1)).long()
    left = (torch.rand(n, generator=g, device=g.device) * (W - w + 1)).long()
    apply = torch.rand(n, generator=g, device=g.device) < p
    return dict(top=top, left=left, h=h, w=w, apply=apply)


class RandomErasing:
    def __init__(self, p: float = 0.5, scale=(0.02, 0.2), ratio=(0.3, 3.3), value: float = 0.0):
        scale, ratio = tuple(float(v) for v in scale), tuple(float(v) for v in ratio)
        if not 0 <= p <= 1:
            raise ValueError(f"data.augment: RandomErasing p={p!r} is invalid: it must lie in [0, 1]")
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] < 1:
            raise ValueError(f"data.augment: RandomErasing scale={list(scale)} is invalid: need 0 < lo ≤ hi < 1")
        if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"data.augment: RandomErasing ratio={list(ratio)} is invalid: need 0 < lo ≤ hi")
        self.p, self.scale, self.ratio, self.value = float(p), scale, ratio, float(value)

    def __call__(self, x: Tensor, g: torch.Generator) -> Tensor:
        e = sample_erasing(len(x), x.shape[-2], x.shape[-1], g, self.p, self.scale, self.ratio)
        return erase_batch(x, e["top"], e["left"], e["h"], e["w"], e["apply"], value=self.value)

    def __repr__(self) -> str:
        return f"RandomErasing(p={self.p}, scale={self.scale}, ratio={self.ratio}, value={self.value})"
