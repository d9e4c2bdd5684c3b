"""The building blocks of the seed-004 family of small MNIST CNNs (lenet_small, lenet_bn, lenet_drop,
lenet_drop_bn, lenet_dl, lenet_deep): each model file only fixes channels, kernels and defaults.

A block is the study's ``nn.Sequential``, in its order:

    conv k×k pad k//2 [→ BatchNorm2d] → relu [→ Dropout2d p2d] → maxpool 2     (N, C, H, W) → (N, C', H/2, W/2)

and the head is ``fc → [Dropout p]``: the study put the last dropout *after* the final linear layer, so
in training it zeroes (and rescales) logits, not features; kept as it was. Layers with p = 0 or without
batch norm are left out, so each model prints (and counts parameters) exactly as the study's.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from regnet.models.common import check_dropout, check_fits


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
    """[input BatchNorm2d] → conv blocks → flatten → fc → [Dropout]; logits (N, num_classes)."""

    def __init__(
        self,
        name: str,
        in_channels: int,
        num_classes: int,
        image_size: int,
        channels: Sequence[int],
        kernels: Sequence[int],
        *,
        batchnorm: bool,
        dropout2d: float,
        dropout: float,
        input_batchnorm: bool = False,
    ):
        super().__init__()
        p2d, p = check_dropout(dropout2d), check_dropout(dropout)
        side = image_size
        for _ in channels:
            side //= 2
        check_fits(name, image_size, side)
        layers: list[nn.Module] = [nn.BatchNorm2d(in_channels)] if input_batchnorm else []
        cin = in_channels
        for cout, k in zip(channels, kernels, strict=True):
            layers.append(conv_block(cin, cout, k, batchnorm=batchnorm, dropout2d=p2d))
            cin = cout
        self.features = nn.Sequential(*layers, nn.Flatten())  # (N, C·side·side)
        head: list[nn.Module] = [nn.Linear(cin * side * side, num_classes)]
        if p > 0:
            head.append(nn.Dropout(p))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
