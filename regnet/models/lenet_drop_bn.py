"""LeNetDropBN of the seed-004 study: LeNetDrop with BatchNorm2d after each convolution, 29,034
parameters.

    x (N, 1, 28, 28)
    conv 1→16 5×5 pad 2 → BN → relu → Dropout2d → maxpool 2      (N, 16, 14, 14)
    conv 16→32 5×5 pad 2 → BN → relu → Dropout2d → maxpool 2     (N, 32, 7, 7)
    flatten → fc 1568→10 → Dropout                               (N, 10) logits (dropout on the logits)
"""

from __future__ import annotations

from regnet.models.small_cnn import SmallCNN


class LeNetDropBN(SmallCNN):
    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        dropout2d: float = 0.125,
        dropout: float = 0.4,
    ):
        super().__init__(
            "lenet_drop_bn", in_channels, num_classes, image_size,
            channels=(16, 32), kernels=(5, 5),
            batchnorm=True, dropout2d=dropout2d, dropout=dropout,
        )  # fmt: skip
