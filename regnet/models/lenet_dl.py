"""LeNetDL of the seed-004 study: LeNetDropBN with deeper layers (32/64 channels); 83,658 parameters with
the 5×5 second convolution (``kernel2: 5``), 50,890 with the study's second try, a 3×3 one (``kernel2: 3``).

    x (N, 1, 28, 28)
    conv 1→32 5×5 pad 2 → BN → relu → Dropout2d → maxpool 2                   (N, 32, 14, 14)
    conv 32→64 k×k pad k//2 → BN → relu → Dropout2d → maxpool 2               (N, 64, 7, 7)
    flatten → fc 3136→10 → Dropout                                            (N, 10) logits (dropout on the logits)
"""

from __future__ import annotations

from regnet.models.small_cnn import SmallCNN


class LeNetDL(SmallCNN):
    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        kernel2: int = 5,
        dropout2d: float = 0.125,
        dropout: float = 0.4,
    ):
        super().__init__(
            "lenet_dl", in_channels, num_classes, image_size,
            channels=(32, 64), kernels=(5, kernel2),
            batchnorm=True, dropout2d=dropout2d, dropout=dropout,
        )  # fmt: skip
