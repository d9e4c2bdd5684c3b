"""SimpleNet from the ``mnist_small_cnns`` study (near state of the art on MNIST with a small CNN; VGG-style
3×3 stacks, Simonyan & Zisserman 2015, with dropout, Srivastava et al. 2014, and batch norm, Ioffe & Szegedy
2015): 1,677,290 parameters on 28×28 inputs.

    x (N, 1, 28, 28)
    conv 1→32 3×3 → relu                                   (N, 32, 28, 28)
    conv 32→32 3×3 → maxpool 2 → dropout 0.25 → relu        (N, 32, 14, 14)
    conv 32→64 3×3 → relu                                  (N, 64, 14, 14)
    conv 64→64 3×3 → maxpool 2 → dropout 0.25 → relu        (N, 64, 7, 7)
    flatten → fc 3136→512 → BatchNorm1d → relu → fc 512→10
"""

from __future__ import annotations

from torch import Tensor, nn

from regnet.models.common import check_dropout, check_fits
from regnet.models.registry import register_model


@register_model("simplenet")
class SimpleNet(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28, dropout: float = 0.25):
        super().__init__()
        p = check_dropout(dropout)
        side = image_size // 2 // 2
        check_fits("simplenet", image_size, side)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.MaxPool2d(2), nn.Dropout(p), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.MaxPool2d(2), nn.Dropout(p), nn.ReLU(),
            nn.Flatten(),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Linear(64 * side * side, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
