"""Gaussian weight noise (Graves 2011, "Practical Variational Inference for Neural Networks"; An 1996):
each training forward pass uses w + σ·ξ, ξ ~ N(0, I), for the weight of every layer ``weight_layers`` lists
(Conv/Linear, and LeNet-5's sparse C3, whose mask then zeroes the noise on unconnected kernels too); the noise is
never written into the weights, and gradients reach the clean weights (∂L/∂w = ∂L/∂(w + σξ)). Evaluation uses
the clean weights."""

from __future__ import annotations

from torch import Tensor, nn
from torch.func import functional_call

from regnet.regularizers.base import Members, Regularizer, check_positive, has_member_axis, per_member, weight_layers


class WeightNoise(Regularizer):
    """Replaces the training forward pass with one through noisy weights (``torch.func.functional_call``)."""

    name = "weight_noise"
    per_member = ("sigma",)

    def __init__(self, sigma: float = 0.01):
        self.sigma = check_positive("reg.weight_noise.sigma", sigma, allow_zero=False)

    def train_forward(self, model: nn.Module, x: Tensor, members: Members) -> Tensor:
        """Member s's weights w_s + σ_s·ξ_s (ξ_s from its own generator; members without it: w_s)."""
        noisy = {id(m.weight): has_member_axis(m) for _, m in weight_layers(model, "reg.weight_noise")}
        params = {}
        for name, p in model.named_parameters():
            if id(p) in noisy:
                w = p if noisy[id(p)] else p.unsqueeze(0)  # (S, ...)
                noise = members.randn(w.shape[1:], self.users, dim=0, like=w)
                p = (w + per_member(self.sigma, w) * noise).view_as(p)
            params[name] = p
        return functional_call(model, params, (x,))
