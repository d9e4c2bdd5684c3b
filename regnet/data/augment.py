"""Per-sample batched data augmentation on the batch's device (GPU when the data lives there).

Each op draws its random parameters **per sample** from a ``torch.Generator`` on the batch's device and
applies them with one batched kernel (no per-sample Python loop). The generator is seeded from
``data.seed`` and a per-DataModule step counter (``seed_for(seed, step, rank)``), so a run is reproducible
and the same on CPU and GPU up to the device's RNG stream.

Order follows the torchvision pipelines of the seed studies: geometric ops run on the [0, 1] image before
normalisation (fill 0 = black, as torchvision on PIL images); RandomErasing runs after normalisation with
value 0 (torchvision's default, seed 004 put it after ToTensor/Normalize).

Presets (``data.augment=``):
- ``none``
- ``mnist_affine``: RandomResizedCrop(28, scale 0.8–1.2) + RandomRotation(30) (seed 004)
- ``mnist_affine_erasing``: the above + RandomErasing(p 0.5, scale 0.02–0.2)
- ``cifar_crop_flip``: RandomCrop(32, padding 4) + RandomHorizontalFlip (He et al. 2016, §4.2)

Differences from torchvision: RandomResizedCrop's rejection sampling (10 tries, then a centre crop) is
replaced by clamping the crop side to the image side; RandomErasing likewise clamps instead of retrying.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

# --- kernels (fixed per-sample parameters) ---------------------------------------------------------------


def affine_batch(x: Tensor, theta: Tensor, mode: str = "bilinear") -> Tensor:
    """x (N, C, H, W) float, theta (N, 2, 3) mapping output → input normalised coords; zero fill."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)  # (N, H, W, 2)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def crop_resize_rotate_theta(
    cx: Tensor, cy: Tensor, w: Tensor, h: Tensor, angle: Tensor
) -> Tensor:
    """(N, 2, 3) for: crop a (w, h) box centred at (cx, cy), resize to the full image, rotate by ``angle``
    degrees counter-clockwise about the centre. All lengths in normalised coords ([-1, 1] is the image),
    so w = h = 2, cx = cy = 0 is the identity crop."""
    a = angle * (math.pi / 180)
    cos, sin = torch.cos(a), torch.sin(a)
    sx, sy = w / 2, h / 2
    # output u → rotated v = R(-a) u (a CCW image rotation samples the input at R(-a) u; y points down)
    theta = torch.stack(
        [
            torch.stack([sx * cos, -sx * sin, cx], -1),
            torch.stack([sy * sin, sy * cos, cy], -1),
        ],
        1,
    )
    return theta


def crop_batch(x: Tensor, padding: int, top: Tensor, left: Tensor) -> Tensor:
    """RandomCrop(size=H, padding) with per-sample offsets: x (N, C, H, W), top/left (N,) int in
    [0, 2·padding] into the zero-padded image. One gather."""
    n, c, h, w = x.shape
    xp = F.pad(x, (padding, padding, padding, padding))
    rows = top[:, None] + torch.arange(h, device=x.device)  # (N, H)
    cols = left[:, None] + torch.arange(w, device=x.device)  # (N, W)
    idx = torch.arange(n, device=x.device)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def hflip_batch(x: Tensor, flip: Tensor) -> Tensor:
    """Flip the samples where ``flip`` (N,) bool is set."""
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def erase_batch(x: Tensor, top: Tensor, left: Tensor, h: Tensor, w: Tensor, apply: Tensor, value: float = 0.0):
    """Set the (h, w) rectangle at (top, left) to ``value`` where ``apply`` (N,) bool is set."""
    H, W = x.shape[-2:]
    r = torch.arange(H, device=x.device)[None, :]
    c = torch.arange(W, device=x.device)[None, :]
    rin = (r >= top[:, None]) & (r < (top + h)[:, None])  # (N, H)
    cin = (c >= left[:, None]) & (c < (left + w)[:, None])  # (N, W)
    mask = (rin[:, :, None] & cin[:, None, :] & apply[:, None, None])[:, None]  # (N, 1, H, W)
    return x.masked_fill(mask, value)


# --- random parameters -----------------------------------------------------------------------------------


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


def sample_erasing(n: int, H: int, W: int, g: torch.Generator, p=0.5, scale=(0.02, 0.2), ratio=(0.3, 3.3)):
    area = _uniform(n, *scale, g) * H * W
    logr = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), g)
    h = torch.sqrt(area * torch.exp(logr)).round().long().clamp(1, H - 1)
    w = torch.sqrt(area / torch.exp(logr)).round().long().clamp(1, W - 1)
    top = (torch.rand(n, generator=g, device=g.device) * (H - h + 1)).long()
    left = (torch.rand(n, generator=g, device=g.device) * (W - w + 1)).long()
    apply = torch.rand(n, generator=g, device=g.device) < p
    return dict(top=top, left=left, h=h, w=w, apply=apply)


def sample_crop_flip(n: int, g: torch.Generator, padding: int = 4):
    top = torch.randint(0, 2 * padding + 1, (n,), generator=g, device=g.device)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=g, device=g.device)
    flip = torch.rand(n, generator=g, device=g.device) < 0.5
    return dict(top=top, left=left, flip=flip)


# --- presets: (geometric op on [0, 1] images, op after normalisation) ---------------------------------------

Op = Callable[[Tensor, torch.Generator], Tensor]


def _identity(x: Tensor, g: torch.Generator) -> Tensor:
    return x


def _mnist_affine(x: Tensor, g: torch.Generator) -> Tensor:
    p = sample_resized_crop_rotate(len(x), g)
    return affine_batch(x, crop_resize_rotate_theta(p["cx"], p["cy"], p["w"], p["h"], p["angle"]))


def _erasing(x: Tensor, g: torch.Generator) -> Tensor:
    p = sample_erasing(len(x), x.shape[-2], x.shape[-1], g)
    return erase_batch(x, p["top"], p["left"], p["h"], p["w"], p["apply"], value=0.0)


def _cifar_crop_flip(x: Tensor, g: torch.Generator) -> Tensor:
    p = sample_crop_flip(len(x), g)
    return hflip_batch(crop_batch(x, 4, p["top"], p["left"]), p["flip"])


PRESETS: dict[str, tuple[Op, Op]] = {
    "none": (_identity, _identity),
    "mnist_affine": (_mnist_affine, _identity),
    "mnist_affine_erasing": (_mnist_affine, _erasing),
    "cifar_crop_flip": (_cifar_crop_flip, _identity),
}


def check_preset(name: str) -> str:
    if name not in PRESETS:
        raise ValueError(f"data.augment={name!r} is unknown: use one of {', '.join(PRESETS)}")
    return name


def seed_for(seed: int, step: int, rank: int = 0) -> int:
    """A generator seed per (data.seed, training batch counter, rank)."""
    return (int(seed) * 1_000_003 + int(step) * 7919 + int(rank) * 104_729) % (2**63 - 1)


def make_generator(device: torch.device, seed: int, step: int, rank: int = 0) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed_for(seed, step, rank))


__all__ = [
    "PRESETS",
    "affine_batch",
    "check_preset",
    "crop_batch",
    "crop_resize_rotate_theta",
    "erase_batch",
    "hflip_batch",
    "make_generator",
    "seed_for",
]
