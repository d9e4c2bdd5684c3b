"""LeNet of the seed-004 study (its class ``LeNet``): 28,938 parameters on 28×28 MNIST.

    x (N, 1, 28, 28)
    conv 1→16 5×5 pad 2 → relu → maxpool 2      (N, 16, 14, 14)
    conv 16→32 5×5 pad 2 → relu → maxpool 2     (N, 32, 7, 7)
    flatten → fc 1568→10                        (N, 10) logits

``dropout2d``/``dropout`` default to 0 (none, as the study); they exist so the family shares one
interface (see ``regnet/models/small_cnn.py`` for where they act).
"""

from __future__ import annotations

from regnet.models.small_cnn import SmallCNN


class LeNetSmall(SmallCNN):
    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        dropout2d: float = 0.0,
        dropout: float = 0.0,
    ):
        super().__init__(
            "lenet_small", in_channels, num_classes, image_size,
            channels=(16, 32), kernels=(5, 5),
            batchnorm=False, dropout2d=dropout2d, dropout=dropout,
        )  # fmt: skip
