"""The two-convolution network of the ``convnet_ablation`` study ("what each ingredient does"), PyTorch's classic
MNIST example (after LeCun et al. 1998's LeNet): 431,080 parameters on 28×28 inputs (431,220 with ``batchnorm``).

    x (N, 1, 28, 28)
    conv 1→20 5×5 → act → maxpool 2 [→ BatchNorm2d]      (N, 20, 12, 12)
    conv 20→50 5×5 → act → maxpool 2 [→ BatchNorm2d]     (N, 50, 4, 4)
    flatten → fc 800→500 → relu → dropout p → fc 500→10   (N, 10) logits [→ log_softmax]

``activation`` (relu | sigmoid) is used in the two conv blocks only, fc1 keeps ReLU, as the study's
sigmoid variant did. BatchNorm (Ioffe & Szegedy 2015, Algorithm 1) comes after the pooling (the study's order).
``dropout`` p ∈ [0, 1] is ``nn.Dropout`` (Srivastava et al. 2014, Sec. 4) before the last layer: p = 1 zeroes
fc2's input in training, so the network outputs only fc2's bias and trains to chance (the study's "dropout 1.0"
row). ``init: xavier`` is xavier-uniform on
every conv/fc weight (``glorot_init_``: Glorot & Bengio 2010, Eq. 16), biases left at PyTorch's default, as the
study did.
``log_softmax: true`` makes the network emit log-probabilities, as the study's ``F.log_softmax`` did; pair
it with ``loss=nll`` (with cross_entropy or bce_onehot it changes nothing: both softmax their input, and
log_softmax is idempotent).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from regnet.models.common import activation as make_activation
from regnet.models.common import check_dropout, check_fits, conv_out
from regnet.models.init import glorot_init_
from regnet.models.registry import register_model

INITS = ("default", "xavier")
CONV_ACTIVATIONS = ("relu", "sigmoid")


def _stack_refusal(model: ConvNet) -> str | None:
    if model.log_softmax:
        return "convnet with log_softmax=true: its log-softmax over dim 1 would mix the members' logits"
    return None


@register_model("convnet", refusal=_stack_refusal)
class ConvNet(nn.Module):
    """The study's network; its ablation switches first, then the input shape and classes (from the data config)."""

    def __init__(
        self,
        activation: Literal["relu", "sigmoid"] = "relu",
        dropout: float = 0.0,
        batchnorm: bool = False,
        init: Literal["default", "xavier"] = "default",
        log_softmax: bool = False,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
    ):
        super().__init__()
        if activation not in CONV_ACTIVATIONS:
            raise ValueError(f"model.activation={activation!r} is unknown: use one of {list(CONV_ACTIVATIONS)}")
        if init not in INITS:
            raise ValueError(f"model.init={init!r} is unknown: use one of {list(INITS)}")
        p = check_dropout(dropout)
        side = conv_out(conv_out(image_size, 5) // 2, 5) // 2  # 28 → 24 → 12 → 8 → 4
        check_fits("convnet", image_size, side)

        def block(cin: int, cout: int) -> list[nn.Module]:
            bn = [nn.BatchNorm2d(cout)] if batchnorm else []
            return [nn.Conv2d(cin, cout, 5), make_activation(activation), nn.MaxPool2d(2), *bn]

        self.features = nn.Sequential(*block(in_channels, 20), *block(20, 50), nn.Flatten())
        self.classifier = nn.Sequential(
            nn.Linear(50 * side * side, 500), nn.ReLU(), nn.Dropout(p), nn.Linear(500, num_classes)
        )
        self.log_softmax = bool(log_softmax)
        if init == "xavier":
            glorot_init_(self, zero_bias=False)

    def forward(self, x: Tensor) -> Tensor:
        z = self.classifier(self.features(x))  # (N, num_classes)
        return z.log_softmax(dim=1) if self.log_softmax else z
