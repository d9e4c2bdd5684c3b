"""Gaussian input noise (Bishop 1995, "Training with Noise is Equivalent to Tikhonov Regularization"):
x + σ·ξ, ξ ~ N(0, I), on training inputs only (in the normalised input space the model sees)."""

from __future__ import annotations

from torch import Tensor

from regnet.regularizers.base import Members, Regularizer, check_positive, per_member


class InputNoise(Regularizer):
    name = "input_noise"
    per_member = ("sigma",)

    def __init__(self, sigma: float = 0.1):
        self.sigma = check_positive("reg.input_noise.sigma", sigma, allow_zero=False)

    def perturb(self, x: Tensor, members: Members) -> Tensor:
        """x (N, S, ...): x_s + σ_s·ξ_s, ξ_s from member s's generator (members without it: unchanged)."""
        noise = members.randn((x.shape[0], *x.shape[2:]), self.users, dim=1, like=x)  # (N, S, ...)
        return x + per_member(self.sigma, x, dim=1) * noise
