"""Gaussian weight noise (Graves 2011, "Practical Variational Inference for Neural Networks"; An 1996):
each training forward pass uses w + σ·ξ, ξ ~ N(0, I), for the weight of every layer ``weight_layers`` lists
(Conv/Linear, and LeNet-5's sparse C3, whose mask then zeroes the noise on unconnected kernels too); the noise is
never written into the weights, and gradients reach the clean weights (∂L/∂w = ∂L/∂(w + σξ)). Evaluation uses
the clean weights."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call

from regnet.regularizers.base import Regularizer, check_positive, weight_layers


class WeightNoise(Regularizer):
    """Replaces the training forward pass with one through noisy weights (``torch.func.functional_call``)."""

    name = "weight_noise"

    def __init__(self, sigma: float = 0.01):
        self.sigma = check_positive("reg.weight_noise.sigma", sigma, allow_zero=False)

    def forward(self, model: nn.Module, x: Tensor) -> Tensor:
        noisy_ids = {id(m.weight) for _, m in weight_layers(model, "reg.weight_noise")}
        params = {
            name: p + self.sigma * torch.randn_like(p) if id(p) in noisy_ids else p
            for name, p in model.named_parameters()
        }
        return functional_call(model, params, (x,))
