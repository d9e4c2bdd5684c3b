"""torchvision's ResNet-18 (He, Zhang, Ren & Sun 2016, "Deep Residual Learning for Image Recognition", Table 1, the
18-layer column, with the identity shortcuts of Eq. 1 and the projection shortcuts of Eq. 2) with a choice of stem.

``stem: imagenet`` is torchvision's 7×7 stride-2 conv + 3×3 max-pool, as the ``cifar100_resnet18`` study used on
CIFAR-100 (11,227,812 parameters at 100 classes); ``stem: cifar`` is the usual CIFAR variant, a 3×3
stride-1 conv and no max-pool, which keeps 32×32 inputs at full resolution in the first stage.
"""

from __future__ import annotations

import torchvision
from torch import Tensor, nn

from regnet.models.common import check_dropout
from regnet.models.registry import register_model

STEMS = ("imagenet", "cifar")


#: torchvision's forwards that ResNet18 runs: read, they only chain children and add the shortcut
_RESNET = torchvision.models.resnet
TORCHVISION_FORWARDS = (_RESNET.ResNet.forward, _RESNET.ResNet._forward_impl, _RESNET.BasicBlock.forward)


@register_model("resnet18", reads=TORCHVISION_FORWARDS)
class ResNet18(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 100, stem: str = "imagenet", dropout: float = 0.0):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"stem={stem!r} is unknown: use one of {list(STEMS)}")
        net = torchvision.models.resnet18(weights=None, num_classes=num_classes)
        if stem == "cifar":
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        p = check_dropout(dropout)
        if p > 0:  # optional dropout before the classifier, so dropout variants compose with ResNet too
            net.fc = nn.Sequential(nn.Dropout(p), net.fc)
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
