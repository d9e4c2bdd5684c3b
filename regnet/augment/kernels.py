"""Batched augmentation kernels: each applies fixed per-sample parameters to a batch (N, C, H, W) with one
tensor op, no per-sample Python loop. The ops (``regnet/augment/<op>.py``) draw the parameters.

Differences from torchvision: RandomResizedCrop's rejection sampling (10 tries, then a centre crop) is
replaced by clamping the crop side to the image side; RandomErasing likewise clamps instead of retrying.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def affine_batch(x: Tensor, theta: Tensor, mode: str = "bilinear") -> Tensor:
    """x (N, C, H, W) float, theta (N, 2, 3) mapping output → input normalised coords; zero fill."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)  # (N, H, W, 2)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def crop_resize_rotate_theta(cx: Tensor, cy: Tensor, w: Tensor, h: Tensor, angle: Tensor) -> Tensor:
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
