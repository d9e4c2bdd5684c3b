"""The interface every regularizer implements.

A regularizer touches training at one or more of these points, each a no-op by default:

- ``setup(model)``: once, before training (e.g. SVB's orthogonal init).
- ``weight_decay``: an L2 coefficient handed to the optimizer (decoupled from the loss).
- ``perturb_inputs(x)``: training inputs, after normalisation (e.g. Gaussian input noise).
- ``forward(model, x)``: replaces ``model(x)`` in training (e.g. weight noise); ``None`` = plain forward.
- ``penalty(model, inputs, logits, targets)``: a scalar added to the training loss (logged as
  ``train/<name>``).
- ``callbacks()``: Lightning callbacks (e.g. SVB's projection after the optimizer step).

Composition (``reg=[l2,jacobian]``) applies every regularizer's hooks in order; at most one of them may replace
the forward pass (``check_composition``).

``weight_matrices`` is the one definition of the weight matrices a regularizer sees (SVB, soft SVB, L1, elastic
net and weight noise use it).
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
from torch import Tensor, nn

from regnet.models.init import DENSE_LAYERS
from regnet.models.lenet5 import SparseConv2d


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


#: the layers whose weight ``weight_matrices`` knows: the dense ones and LeNet-5's sparse convolution
WEIGHT_LAYERS = (*DENSE_LAYERS, SparseConv2d)


def weight_layers(model: nn.Module, regularizer: str = "weight_matrices") -> list[tuple[str, nn.Module]]:
    """Every layer with a weight matrix, (name, module) in ``model.named_modules()`` order: Linear, Conv1d/2d/3d
    and ``SparseConv2d``. A weight matrix is a parameter with ≥ 2 dimensions; biases and normalisation or
    subsampling scales (1-D) are not. A module that owns a ≥ 2-D parameter and is none of these layers raises a
    one-line ``ValueError`` naming it and ``regularizer``: nothing is skipped without a word."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, WEIGHT_LAYERS):
            out.append((name, m))
            continue
        for pname, p in m.named_parameters(recurse=False):
            if p.dim() >= 2:
                where = f"{name}.{pname}" if name else pname
                known = ", ".join(t.__name__ for t in WEIGHT_LAYERS)
                raise ValueError(
                    f"{regularizer} does not know the layer {name or type(m).__name__!r} ({type(m).__name__}, "
                    f"{where} of shape {tuple(p.shape)}): it handles the weights of {known} only"
                )
    return out


def weight_matrices(model: nn.Module, regularizer: str = "weight_matrices") -> list[tuple[str, nn.Module, Tensor]]:
    """Every layer's weight as a matrix: (name, module, W of shape out × in·k·k), layers as ``weight_layers``.

    For Linear/Conv layers W is a view of the weight, so in-place edits of the matrix edit the layer. For a
    ``SparseConv2d`` W is the weight the layer applies, ``weight · mask``: a new tensor (differentiable) whose
    unconnected entries are 0 and get no gradient, so a penalty on it leaves them at 0; it cannot be edited in
    place (SVB refuses such layers).
    """
    out = []
    for name, m in weight_layers(model, regularizer):
        w = m.weight * m.mask if isinstance(m, SparseConv2d) else m.weight
        out.append((name, m, w.view(w.shape[0], -1)))
    return out


def check_composition(regularizers: Sequence[Regularizer]) -> None:
    """One-line ``ValueError`` if more than one regularizer replaces the training forward pass (overrides
    ``forward``): the module can run only one of them, and the others would be dropped without a word."""
    replacing = [r.name for r in regularizers if type(r).forward is not Regularizer.forward]
    if len(replacing) > 1:
        names = ",".join(r.name for r in regularizers)
        raise ValueError(
            f"reg=[{names}]: {' and '.join(replacing)} each replace the training forward pass and only one can; "
            "keep one of them"
        )


__all__ = ["WEIGHT_LAYERS", "Regularizer", "check_composition", "check_positive", "weight_layers", "weight_matrices"]
