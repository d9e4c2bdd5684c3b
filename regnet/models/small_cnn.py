"""The ``mnist_small_cnns`` family: six small MNIST CNNs of the study, LeNet-like (LeCun et al. 1998, "Gradient-based
learning applied to document recognition") with batch norm (Ioffe & Szegedy 2015, Algorithm 1) and dropout
(Srivastava et al. 2014, Sec. 4; ``Dropout2d`` drops whole feature maps, the SpatialDropout of Tompson et al.
2015) switched on or off. One class, ``SmallCNN``, builds each from its row of the table below; each variant is
a named subclass (its ``conf/model/<name>.yaml`` targets it) that only fixes its row.

    name           input BN  channels         kernels     BN  Dropout2d  Dropout  parameters on 1×28×28
    lenet_small    –         16, 32           5, 5        –   –          –        28,938 (the study's LeNet)
    lenet_bn       –         16, 32           5, 5        ✓   –          –        29,034
    lenet_drop     –         16, 32           5, 5        –   0.125      0.4      28,938
    lenet_drop_bn  –         16, 32           5, 5        ✓   0.125      0.4      29,034
    lenet_dl       –         32, 64           5, kernel2  ✓   0.125      0.4      83,658 (kernel2 5); 50,890 (3)
    lenet_deep     ✓         16, 32, 64, 128  5, 5, 3, 3  ✓   0.125      0.4      107,372

A block is the study's ``nn.Sequential``, in its order, and halves the map, (N, C, H, W) → (N, C', H/2, W/2):

    block: conv k×k pad k//2 [→ BatchNorm2d] → relu [→ Dropout2d p2d] → maxpool 2
    model: x (N, 1, 28, 28) [→ BatchNorm2d] → blocks → flatten → fc → [Dropout p]     (N, num_classes) logits

The head's dropout comes *after* the final linear layer, as the study put it: in training it zeroes (and
rescales) logits, not features; kept as it was. Layers with p = 0 or without batch norm are left out, so each
model prints (and counts parameters) exactly as the study's. ``dropout2d``/``dropout`` default to the table's
values and can be set per run (``model.dropout=0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

from torch import Tensor, nn

from regnet.models.common import check_dropout, check_fits
from regnet.models.registry import register_model


@dataclass(frozen=True)
class Arch:
    """One row of the family's table: the architecture a variant fixes, and its default dropout rates."""

    channels: tuple[int, ...]
    kernels: tuple[int, ...]
    batchnorm: bool = False
    input_batchnorm: bool = False
    dropout2d: float = 0.0
    dropout: float = 0.0


def conv_block(cin: int, cout: int, kernel: int, *, batchnorm: bool, dropout2d: float) -> nn.Sequential:
    if kernel % 2 != 1:
        raise ValueError(f"kernel={kernel!r} is invalid: use an odd size (3, 5, ...) so padding keeps the size")
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride=1, padding=kernel // 2)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU())
    if dropout2d > 0:
        layers.append(nn.Dropout2d(dropout2d))
    layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """[input BatchNorm2d] → conv blocks → flatten → fc → [Dropout]; logits (N, num_classes). A subclass sets
    ``name`` and ``arch``; ``arch`` may also be given (e.g. with another kernel)."""

    name: ClassVar[str]
    arch: ClassVar[Arch]

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        dropout2d: float | None = None,
        dropout: float | None = None,
        *,
        arch: Arch | None = None,
    ):
        super().__init__()
        arch = arch or self.arch
        p2d = check_dropout(arch.dropout2d if dropout2d is None else dropout2d)
        p = check_dropout(arch.dropout if dropout is None else dropout)
        side = image_size
        for _ in arch.channels:
            side //= 2
        check_fits(self.name, image_size, side)
        layers: list[nn.Module] = [nn.BatchNorm2d(in_channels)] if arch.input_batchnorm else []
        cin = in_channels
        for cout, k in zip(arch.channels, arch.kernels, strict=True):
            layers.append(conv_block(cin, cout, k, batchnorm=arch.batchnorm, dropout2d=p2d))
            cin = cout
        self.features = nn.Sequential(*layers, nn.Flatten())  # (N, C·side·side)
        head: list[nn.Module] = [nn.Linear(cin * side * side, num_classes)]
        if p > 0:
            head.append(nn.Dropout(p))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class LeNetSmall(SmallCNN):
    """The study's ``LeNet``: two conv blocks, no batch norm, no dropout."""

    name, arch = "lenet_small", Arch(channels=(16, 32), kernels=(5, 5))


class LeNetBN(SmallCNN):
    """The study's ``LeNetBN``: lenet_small with BatchNorm2d after each convolution."""

    name, arch = "lenet_bn", Arch(channels=(16, 32), kernels=(5, 5), batchnorm=True)


class LeNetDrop(SmallCNN):
    """The study's ``LeNetDrop``: lenet_small with Dropout2d(0.125) in each block and Dropout(0.4) on the logits."""

    name, arch = "lenet_drop", Arch(channels=(16, 32), kernels=(5, 5), dropout2d=0.125, dropout=0.4)


class LeNetDropBN(SmallCNN):
    """The study's ``LeNetDropBN``: lenet_drop with BatchNorm2d after each convolution."""

    name, arch = "lenet_drop_bn", Arch((16, 32), (5, 5), batchnorm=True, dropout2d=0.125, dropout=0.4)


class LeNetDL(SmallCNN):
    """The study's ``LeNetDL``: lenet_drop_bn with 32/64 channels; ``kernel2`` is the second convolution's kernel,
    5 (83,658 parameters) or 3 (50,890, the study's second try)."""

    name, arch = "lenet_dl", Arch((32, 64), (5, 5), batchnorm=True, dropout2d=0.125, dropout=0.4)

    def __init__(self, in_channels=1, num_classes=10, image_size=28, kernel2: int = 5, dropout2d=None, dropout=None):
        arch = replace(self.arch, kernels=(self.arch.kernels[0], kernel2))
        super().__init__(in_channels, num_classes, image_size, dropout2d, dropout, arch=arch)


class LeNetDeep(SmallCNN):
    """The study's ``LeNetDeep``: an input BatchNorm2d and four conv blocks with BN and Dropout2d."""

    name = "lenet_deep"
    arch = Arch((16, 32, 64, 128), (5, 5, 3, 3), batchnorm=True, input_batchnorm=True, dropout2d=0.125, dropout=0.4)


#: the family, in the table's order
FAMILY: Sequence[type[SmallCNN]] = (LeNetSmall, LeNetBN, LeNetDrop, LeNetDropBN, LeNetDL, LeNetDeep)
for _cls in FAMILY:  # each under the name its row gives it
    register_model(_cls.name)(_cls)

__all__ = ["FAMILY", "Arch", "LeNetBN", "LeNetDL", "LeNetDeep", "LeNetDrop", "LeNetDropBN", "LeNetSmall", "SmallCNN"]
