"""RandomResizedCrop + RandomRotation as one affine resample per image (mnist_small_cnns' ``mnist_affine``):
crop a box of ``scale`` × the image area and aspect ratio in ``ratio``, resize it to the full image, rotate
it by an angle in [−degrees, degrees]; bilinear, zero fill. Runs on [0, 1] images."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from regnet.augment.kernels import affine_batch, crop_resize_rotate_theta


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=g.device)


def sample_resized_crop_rotate(n: int, g: torch.Generator, scale=(0.8, 1.2), ratio=(3 / 4, 4 / 3), degrees=30.0):
    """RandomResizedCrop + RandomRotation parameters (N,) each, normalised coords."""
    area = _uniform(n, *scale, g)
    logr = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), g)
    w = torch.sqrt(area * torch.exp(logr)).clamp(max=1.0) * 2  # fraction of the side × 2
    h = torch.sqrt(area / torch.exp(logr)).clamp(max=1.0) * 2
    cx = (torch.rand(n, generator=g, device=g.device) * 2 - 1) * (1 - w / 2)
    cy = (torch.rand(n, generator=g, device=g.device) * 2 - 1) * (1 - h / 2)
    angle = _uniform(n, -degrees, degrees, g)
    return dict(cx=cx, cy=cy, w=w, h=h, angle=angle, area=area)


class RandomResizedCropRotate:
    def __init__(self, scale=(0.8, 1.2), ratio=(3 / 4, 4 / 3), degrees: float = 30.0):
        scale, ratio = tuple(float(v) for v in scale), tuple(float(v) for v in ratio)
        if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
            raise ValueError(f"data.augment: RandomResizedCropRotate scale={list(scale)} is invalid: need 0 < lo ≤ hi")
        if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"data.augment: RandomResizedCropRotate ratio={list(ratio)} is invalid: need 0 < lo ≤ hi")
        if not degrees >= 0:
            raise ValueError(f"data.augment: RandomResizedCropRotate degrees={degrees!r} is invalid: it must be ≥ 0")
        self.scale, self.ratio, self.degrees = scale, ratio, float(degrees)

    def __call__(self, x: Tensor, g: torch.Generator) -> Tensor:
        p = sample_resized_crop_rotate(len(x), g, self.scale, self.ratio, self.degrees)
        return affine_batch(x, crop_resize_rotate_theta(p["cx"], p["cy"], p["w"], p["h"], p["angle"]))

    def __repr__(self) -> str:
        return f"RandomResizedCropRotate(scale={self.scale}, ratio={self.ratio}, degrees={self.degrees})"
