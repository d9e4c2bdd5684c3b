"""LeNetDeep of the seed-004 study: an input BatchNorm2d and four conv blocks with BN and Dropout2d,
107,372 parameters on 28×28 MNIST.

    x (N, 1, 28, 28) → BN
    conv 1→16 5×5 pad 2 → BN → relu → Dropout2d → maxpool 2       (N, 16, 14, 14)
    conv 16→32 5×5 pad 2 → BN → relu → Dropout2d → maxpool 2      (N, 32, 7, 7)
    conv 32→64 3×3 pad 1 → BN → relu → Dropout2d → maxpool 2      (N, 64, 3, 3)
    conv 64→128 3×3 pad 1 → BN → relu → Dropout2d → maxpool 2     (N, 128, 1, 1)
    flatten → fc 128→10 → Dropout                                 (N, 10) logits (dropout on the logits)
"""

from __future__ import annotations

from regnet.models.small_cnn import SmallCNN


class LeNetDeep(SmallCNN):
    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        dropout2d: float = 0.125,
        dropout: float = 0.4,
    ):
        super().__init__(
            "lenet_deep", in_channels, num_classes, image_size,
            channels=(16, 32, 64, 128), kernels=(5, 5, 3, 3),
            batchnorm=True, dropout2d=dropout2d, dropout=dropout, input_batchnorm=True,
        )  # fmt: skip
