"""LeNet as used by Hoffman, Roberts & Yaida 2019 ("Robust Learning with Jacobian Regularization"; a LeNet after
LeCun et al. 1998) and the ``hoffman2019_mnist`` study: 61,706 parameters on 28×28 MNIST.

    x (N, 1, 28, 28)
    conv 1→6 5×5 pad 2 → act → maxpool 2      (N, 6, 14, 14)
    conv 6→16 5×5      → act → maxpool 2      (N, 16, 5, 5)
    flatten → fc 400→120 → act → dropout → fc 120→84 → act → dropout → fc 84→10
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from regnet.models.common import activation, check_dropout, check_fits, conv_out
from regnet.models.init import glorot_init_, orthogonal_init_
from regnet.models.registry import register_model

INITS = ("glorot", "orthogonal", "default")


@register_model("lenet")
class LeNet(nn.Module):
    """``init``: glorot (the study's xavier-uniform, zero biases) | orthogonal (what SVB starts from) | default."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        activation: str = "tanh",
        dropout: float = 0.5,
        init: Literal["glorot", "orthogonal", "default"] = "glorot",
    ):
        super().__init__()
        act = _act_factory(activation)
        p = check_dropout(dropout)
        side = conv_out(conv_out(image_size, 5, padding=2) // 2, 5) // 2  # 28 → 28 → 14 → 10 → 5
        check_fits("lenet", image_size, side)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), act(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), act(), nn.MaxPool2d(2),
            nn.Flatten(),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Linear(16 * side * side, 120), act(), nn.Dropout(p),
            nn.Linear(120, 84), act(), nn.Dropout(p),
            nn.Linear(84, num_classes),
        )  # fmt: skip
        init_weights_(self, init)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def _act_factory(name: str):
    activation(name)  # validates
    return lambda: activation(name)


def init_weights_(model: nn.Module, init: str) -> None:
    """glorot: ``glorot_init_`` with zero biases; orthogonal: ``orthogonal_init_``; default: PyTorch's own."""
    if init not in INITS:
        raise ValueError(f"init={init!r} is unknown: use one of {list(INITS)}")
    if init == "orthogonal":
        orthogonal_init_(model)
    elif init == "glorot":
        glorot_init_(model, zero_bias=True)
