"""Soft singular value bounding / soft orthogonality (Bansal, Chen & Wang 2018, "Can we gain more from
orthogonality regularizations in training deep CNNs?", the SO penalty, Eq. 2):

    λ · Σ_layers ‖WᵀW − I‖²_F,   W the Conv/Linear weight as out × in·k·k (``weight_matrices``).

The Gram matrix is taken on the smaller side (WWᵀ when out < in·k·k, else WᵀW): for a wide matrix
WᵀW has rank ≤ out and cannot equal I, so the penalty asks for orthonormal rows instead of columns. For
LeNet-5's sparse C3 (``SparseConv2d``) W is the applied weight ``weight · mask``: its unconnected entries get no
gradient from the penalty and stay 0.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from regnet.regularizers.base import WeightPenalty, member_weight_matrices


def orthogonality_gap(w: Tensor) -> Tensor:
    """‖G − I‖²_F with G = WᵀW (tall) or WWᵀ (wide); w: (out, in·k·k) → (), or (S, out, in·k·k) → (S,)."""
    if w.dim() == 3 and w.shape[0] == 1:  # one member: the plain 2-D product (a batched one may take another kernel)
        return orthogonality_gap(w[0]).unsqueeze(0)
    wt = w.transpose(-1, -2)
    gram = w @ wt if w.shape[-2] < w.shape[-1] else wt @ w  # (..., r, r), r = min(out, in·k·k)
    eye = torch.eye(gram.shape[-1], device=w.device, dtype=w.dtype)
    return (gram - eye).pow(2).sum(dim=(-2, -1))


class SoftSVB(WeightPenalty):
    """Adds ``lam · Σ orthogonality_gap(W)`` over every weight matrix to the loss."""

    name = "soft_svb"

    def __init__(self, lam: float = 1e-4):
        super().__init__(lam)

    def measure(self, model: nn.Module) -> Tensor:
        gaps = [orthogonality_gap(w) for _, _, w in member_weight_matrices(model, "reg.soft_svb")]  # each (S,)
        return torch.stack(gaps).sum(0)
