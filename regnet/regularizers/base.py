"""The interface every regularizer implements.

A regularizer touches training at one or more of these points, each a no-op by default:

- ``setup(model)``: once, before training (e.g. SVB's orthogonal init).
- ``weight_decay``: an L2 coefficient handed to the optimizer (decoupled from the loss).
- ``perturb_inputs(x)``: training inputs, after normalisation (e.g. Gaussian input noise).
- ``forward(model, x)``: replaces ``model(x)`` in training (e.g. weight noise); ``None`` = plain forward.
- ``penalty(model, inputs, logits, targets)``: a scalar added to the training loss (logged as
  ``train/<name>``).
- ``callbacks()``: Lightning callbacks (e.g. SVB's projection after the optimizer step).

Composition (``reg=[l2,jacobian]``) applies every regularizer's hooks in order.
"""

from __future__ import annotations

import lightning as L
from torch import Tensor, nn


class Regularizer:
    """Base class; subclasses override only the hooks they need."""

    #: short name, used for logging (``train/<name>``) and in results.json
    name: str = "none"
    #: True if ``penalty`` differentiates w.r.t. the inputs (they get ``requires_grad``)
    needs_input_grad: bool = False
    #: L2 coefficient for the optimizer's ``weight_decay``
    weight_decay: float = 0.0

    def setup(self, model: nn.Module) -> None:
        """Called once on the freshly built model, before the optimizer exists."""

    def perturb_inputs(self, x: Tensor) -> Tensor:
        """Training inputs (N, C, H, W), normalised; return the perturbed batch."""
        return x

    def forward(self, model: nn.Module, x: Tensor) -> Tensor | None:
        """Training forward pass replacing ``model(x)``; ``None`` keeps the plain one."""
        return None

    def penalty(self, model: nn.Module, inputs: Tensor, logits: Tensor, targets: Tensor) -> Tensor | None:
        """Scalar added to the training loss; ``None`` adds nothing."""
        return None

    def callbacks(self) -> list[L.Callback]:
        return []

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


def check_positive(name: str, value: float, *, allow_zero: bool = True) -> float:
    """One-line error for a bad hyper-parameter (negative, or zero where not allowed)."""
    ok = value >= 0 if allow_zero else value > 0
    if not ok or value != value or value in (float("inf"), float("-inf")):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ValueError(f"{name}={value!r} is invalid: it must be a finite number {bound}")
    return float(value)


def weight_matrices(model: nn.Module) -> list[tuple[str, nn.Module, Tensor]]:
    """Every Conv/Linear weight as a matrix: (name, module, W of shape out × in·k·k).

    The reshape is a view, so in-place edits of the matrix edit the layer.
    """
    out = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            w = m.weight
            out.append((name, m, w.view(w.shape[0], -1)))
    return out


__all__ = ["Regularizer", "check_positive", "weight_matrices"]
