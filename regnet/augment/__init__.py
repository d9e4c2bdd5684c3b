"""Per-sample batched data augmentation on the batch's device (GPU when the data lives there); training only.

``augment=<name>`` picks ``conf/augment/<name>.yaml``: an :class:`Augmentation`, i.e. a list of ops on the
[0, 1] image before normalisation (geometric: fill 0 = black, as torchvision on PIL images) and a list after
normalisation (RandomErasing with value 0, torchvision's default; mnist_small_cnns put it after
ToTensor/Normalize). Each op draws its random parameters **per sample** from one ``torch.Generator`` on the
batch's device and applies them with one batched kernel (``kernels.py``; no per-sample Python loop). The
generator is seeded from ``data.seed`` and a per-DataModule step counter (:func:`seed_for`), so a run is
reproducible, and the same on CPU and GPU up to the device's RNG stream.

The presets (``conf/augment/``): ``none``; ``mnist_affine``, RandomResizedCrop(28, scale 0.8–1.2) +
RandomRotation(30) (mnist_small_cnns); ``mnist_affine_erasing``, the same + RandomErasing(p 0.5, scale
0.02–0.2); ``cifar_crop_flip``, RandomCrop(32, padding 4) + RandomHorizontalFlip (He et al. 2016, §4.2).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import torch
from torch import Tensor

CONF = Path(__file__).resolve().parents[2] / "conf" / "augment"
log = logging.getLogger(__name__)

#: an op: (images (N, C, H, W) float, generator on their device) → images of the same shape
Op = Callable[[Tensor, torch.Generator], Tensor]


class Augmentation:
    """``geometric`` ops run on [0, 1] images, then the DataModule normalises, then ``normalized`` ops run."""

    def __init__(self, geometric: Sequence[Op] = (), normalized: Sequence[Op] = ()):
        self.geometric, self.normalized = list(geometric), list(normalized)

    def __bool__(self) -> bool:  # ``none``: no ops, the DataModule skips the generator altogether
        return bool(self.geometric or self.normalized)

    def before_normalization(self, x: Tensor, g: torch.Generator) -> Tensor:
        for op in self.geometric:
            x = op(x, g)
        return x

    def after_normalization(self, x: Tensor, g: torch.Generator) -> Tensor:
        for op in self.normalized:
            x = op(x, g)
        return x

    def __repr__(self) -> str:
        return f"Augmentation(geometric={self.geometric}, normalized={self.normalized})"


def names() -> list[str]:
    """The presets, ``conf/augment/*.yaml``."""
    return sorted(p.stem for p in CONF.glob("*.yaml"))


@cache
def preset(name: str) -> Augmentation:
    """``conf/augment/<name>.yaml`` built, for a config that names its augmentation as a string: the older
    spelling ``data.augment=<name>`` (and older runs' ``results.json``), kept working with a one-line hint."""
    if name not in names():
        raise ValueError(f"data.augment={name!r} is unknown: use augment=<name> with one of {', '.join(names())}")
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    if name != "none":
        log.warning("data.augment=%s is the old spelling: write augment=%s", name, name)
    return instantiate(OmegaConf.load(CONF / f"{name}.yaml"))


def seed_for(seed: int, step: int, rank: int = 0) -> int:
    """A generator seed per (data.seed, training batch counter, rank)."""
    return (int(seed) * 1_000_003 + int(step) * 7919 + int(rank) * 104_729) % (2**63 - 1)


def make_generator(device: torch.device, seed: int, step: int, rank: int = 0) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed_for(seed, step, rank))


__all__ = ["Augmentation", "Op", "make_generator", "names", "preset", "seed_for"]
