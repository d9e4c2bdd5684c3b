"""Gaussian input noise (Bishop 1995, "Training with Noise is Equivalent to Tikhonov Regularization"):
x + σ·ξ, ξ ~ N(0, I), on training inputs only (in the normalised input space the model sees)."""

from __future__ import annotations

import torch
from torch import Tensor

from regnet.regularizers.base import Regularizer, check_positive


class InputNoise(Regularizer):
    name = "input_noise"

    def __init__(self, sigma: float = 0.1):
        self.sigma = check_positive("reg.input_noise.sigma", sigma, allow_zero=False)

    def perturb_inputs(self, x: Tensor) -> Tensor:
        return x + self.sigma * torch.randn_like(x)
