"""LeNet-5 of LeCun, Bottou, Bengio & Haffner 1998 ("Gradient-based learning applied to document
recognition", Sec. II.B and Table I), as the ``lenet5_lecun`` study built it.

    x (N, 1, 32, 32)                 MNIST padded by 2 (data.pad=2), background −0.1, foreground 1.175
    C1 conv 1→6 5×5 → tanh            (N, 6, 28, 28)
    S2 subsampling → tanh             (N, 6, 14, 14)   2×2 average × coefficient + bias, per map
    C3 sparse conv 6→16 5×5 → tanh    (N, 16, 10, 10)  60 of the 96 map pairs connected (Table I)
    S4 subsampling → tanh             (N, 16, 5, 5)
    C5 conv 16→120 5×5 → tanh         (N, 120, 1, 1) → flatten (N, 120)
    F6 fc 120→84 → tanh
    output fc 84→10                   logits; the softmax belongs to the loss (loss=bce_onehot)

Trainable parameters: 60,850 (C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164, output 850), the
paper's counts except the output layer, where the paper's Euclidean RBF units (84·10 fixed codes) are
replaced by a linear layer, as the study did. C3's weight tensor stores all 16·6 kernels (61,750
elements in ``parameters()``); the 36 unconnected kernels are multiplied by a fixed 0/1 mask in every
forward pass, so they get zero gradient and never influence the output.

Differences from the paper, all as in the study: plain tanh instead of 1.7159·tanh(2a/3); softmax +
binary cross-entropy on one-hot targets instead of RBF outputs and the MAP criterion; Adam instead of
stochastic diagonal Levenberg–Marquardt. Unlike the study's notebook, which built the masked C3 but then
used a dense convolution, the mask is applied here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from regnet.models.common import check_fits, conv_out
from regnet.models.registry import register_model

#: LeCun et al. 1998, Table I: for each S2 map (row), the C3 maps it feeds. C3 maps 0–5 see 3 contiguous
#: S2 maps, 6–11 see 4 contiguous, 12–14 see 4 discontinuous, 15 sees all 6: 60 connections.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 4, 5, 6, 9, 10, 11, 12, 14, 15),
    (0, 1, 5, 6, 7, 10, 11, 12, 13, 15),
    (0, 1, 2, 6, 7, 8, 11, 13, 14, 15),
    (1, 2, 3, 6, 7, 8, 9, 12, 14, 15),
    (2, 3, 4, 7, 8, 9, 10, 12, 13, 15),
    (3, 4, 5, 8, 9, 10, 11, 13, 14, 15),
)


def c3_mask(in_maps: int = 6, out_maps: int = 16) -> Tensor:
    """0/1 connection mask (out_maps, in_maps) of Table I: mask[o, i] = 1 if S2 map i feeds C3 map o."""
    mask = torch.zeros(out_maps, in_maps)
    for i, outs in enumerate(C3_TABLE):
        mask[list(outs), i] = 1.0
    return mask


class Subsampling(nn.Module):
    """LeNet-5's S layers: tanh(coefficient_c · avgpool2(x)_c + bias_c), one coefficient and bias per map.

    The paper sums the four inputs; averaging differs only by a factor 4 absorbed in the coefficient.
    Initialised uniform in (−1, 1) as the study did.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.coefficient = nn.Parameter(torch.empty(channels).uniform_(-1.0, 1.0))  # (C,)
        self.bias = nn.Parameter(torch.empty(channels).uniform_(-1.0, 1.0))  # (C,)

    def forward(self, x: Tensor) -> Tensor:
        pooled = F.avg_pool2d(x, kernel_size=2, stride=2)  # (N, C, H/2, W/2)
        return torch.tanh(self.coefficient.view(1, -1, 1, 1) * pooled + self.bias.view(1, -1, 1, 1))


class SparseConv2d(nn.Module):
    """A convolution whose (out, in) kernel pairs are switched on or off by a fixed 0/1 ``mask``.

    The forward pass convolves with ``weight * mask`` (F.conv2d), so an unconnected kernel has zero
    gradient and no effect on the output, whatever optimizer, weight decay or projection touches it.
    """

    def __init__(self, mask: Tensor, kernel_size: int):
        super().__init__()
        out_ch, in_ch = mask.shape
        self.register_buffer("mask", mask.view(out_ch, in_ch, 1, 1).clone())  # (O, I, 1, 1)
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, kernel_size, kernel_size))  # (O, I, k, k)
        self.bias = nn.Parameter(torch.empty(out_ch))
        # PyTorch's default conv init (uniform ±1/√fan_in), with each map's true fan-in (connected inputs · k²)
        fan_in = mask.sum(dim=1) * kernel_size * kernel_size  # (O,)
        bound = (1.0 / fan_in.sqrt()).view(out_ch, 1, 1, 1)
        with torch.no_grad():
            self.weight.uniform_(-1.0, 1.0).mul_(bound).mul_(self.mask)
            self.bias.uniform_(-1.0, 1.0).mul_(bound.view(-1))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias)

    def connections(self) -> int:
        """Trainable parameters actually in use: connected kernels' weights plus the biases."""
        k = self.weight.shape[-1]
        return int(self.mask.sum().item()) * k * k + self.bias.numel()


@register_model("lenet5")
class LeNet5(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 32):
        super().__init__()
        side = conv_out(conv_out(conv_out(image_size, 5) // 2, 5) // 2, 5)  # 32 → 28 → 14 → 10 → 5 → 1
        check_fits("lenet5 (use data.pad=2 data.image_size=32 for 28×28 MNIST)", image_size, side)
        self.c1 = nn.Conv2d(in_channels, 6, 5)
        self.s2 = Subsampling(6)
        self.c3 = SparseConv2d(c3_mask(6, 16), kernel_size=5)
        self.s4 = Subsampling(16)
        self.c5 = nn.Conv2d(16, 120, 5)
        self.f6 = nn.Linear(120 * side * side, 84)
        self.output = nn.Linear(84, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.s2(torch.tanh(self.c1(x)))  # (N, 6, 14, 14)
        x = self.s4(torch.tanh(self.c3(x)))  # (N, 16, 5, 5)
        x = torch.tanh(self.c5(x)).flatten(1)  # (N, 120)
        x = torch.tanh(self.f6(x))  # (N, 84)
        return self.output(x)  # (N, num_classes) logits

    def trainable_parameters(self) -> int:
        """Parameters that influence the output: all of them, less C3's masked-out kernel weights."""
        total = sum(p.numel() for p in self.parameters())
        return total - self.c3.weight.numel() - self.c3.bias.numel() + self.c3.connections()


__all__ = ["C3_TABLE", "LeNet5", "SparseConv2d", "Subsampling", "c3_mask"]
