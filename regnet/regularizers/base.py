"""The interface every regularizer implements, written once over a member axis.

A regularizer touches training at one or more of these points, each a no-op by default. Each hook works on S
members side by side (a stack, ``regnet/stacked``: tensors carry a member axis, each member its own
hyper-parameters and random generator); an ordinary run is the plain case, one member and no member axis
(HFTA's habit, Wang et al., MLSys 2021: one definition per operation, whose ordinary case is the plain one).

- ``setup(model)``: once, on each member's freshly built model, before training (e.g. SVB's orthogonal init).
- ``weight_decay``: an L2 coefficient handed to the optimizer (decoupled from the loss).
- ``perturb(x, members)``: training inputs (N, S, ...), after normalisation (e.g. Gaussian input noise).
- ``train_forward(model, x, members)``: replaces ``model(x)`` in training (e.g. weight noise); ``None`` = plain.
- ``member_penalty(model, inputs, logits, targets, members)``: (S,) added to each member's training loss
  (logged as ``train/<name>``); logits (N, S, K), targets (N, S).
- ``after_step(model, step, alive)``: after each optimizer step (e.g. SVB's projection); returns the members
  found diverged.
- ``callbacks()``: Lightning callbacks of an ordinary run (e.g. the one that calls SVB's ``after_step``).

``perturb_inputs(x)``, ``forward(model, x)`` and ``penalty(model, inputs, logits, targets)`` are the plain case
(no member axis) of the hooks above, which ``RegNetModule`` calls. ``Regularizer.stack`` turns the members'
regularizers of one kind into one whose hyper-parameters (``per_member``) are (S,) tensors, 0 for the members
without it; a regularizer that cannot stack says why in ``not_stacked``.

Composition (``reg=[l2,jacobian]``) applies every regularizer's hooks in order; at most one of them may replace
the forward pass (``check_composition``).

``weight_matrices`` is the one definition of the weight matrices a regularizer sees (SVB, soft SVB, L1, elastic
net and weight noise use it); ``member_weight_matrices`` is the same with a member axis.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import lightning as L
import torch
from torch import Tensor, nn

from regnet.models.init import DENSE_LAYERS
from regnet.models.lenet5 import SparseConv2d


class Members:
    """The member axis a hook runs over: ``size`` runs side by side, each drawing its random numbers from its own
    generator (a stack's ``generators``), or an ordinary run's one member drawing from torch's global generator
    (``Members()``, ``generators=None``)."""

    def __init__(self, size: int = 1, generators: Sequence[torch.Generator] | None = None):
        self.size, self.generators = size, generators

    def randn(self, shape, users: Sequence[int] | None, dim: int, like: Tensor) -> Tensor:
        """N(0, I) draws of ``shape`` for the members in ``users`` (all if None), in that order, each from its
        own generator (as its separate run draws from the global one); zeros for the others; stacked along
        ``dim`` into a tensor of ``like``'s dtype and device."""
        users = range(self.size) if users is None else users
        kw = {"device": like.device, "dtype": like.dtype}
        draws = {s: torch.randn(shape, generator=self.generators[s] if self.generators else None, **kw) for s in users}
        zeros = torch.zeros(shape, **kw) if len(draws) < self.size else None
        return torch.stack([draws.get(s, zeros) for s in range(self.size)], dim=dim)


#: an ordinary run: one member, torch's global generator
ONE = Members()


def per_member(value, like: Tensor, dim: int = 0):
    """A hyper-parameter as ``like`` uses it along its member axis ``dim``: an ordinary run's float as it is
    (Python arithmetic, as the plain formula), a stack's (S,) float64 values in ``like``'s dtype and device,
    shaped to broadcast over a ``like.dim()``-dimensional tensor. Derived values (1 − ε, 1/(1 + ε)) are computed
    before this, in float64 as Python computes them."""
    if not isinstance(value, Tensor):
        return value
    shape = [1] * like.dim()
    shape[dim] = -1
    return value.to(like.device, like.dtype).view(shape)


def _axis(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.unsqueeze(1)


class Regularizer:
    """Base class; subclasses override only the hooks they need."""

    #: short name, used for logging (``train/<name>``) and in results.json
    name: str = "none"
    #: True if ``penalty`` differentiates w.r.t. the inputs (they get ``requires_grad``)
    needs_input_grad: bool = False
    #: L2 coefficient for the optimizer's ``weight_decay``
    weight_decay: float = 0.0
    #: the hyper-parameters each member of a stack may set on its own (a stack holds them as (S,) tensors)
    per_member: tuple[str, ...] = ()
    #: the settings every member of a stack using this regularizer must share (the launcher groups by them)
    shared: tuple[str, ...] = ()
    #: why this regularizer cannot train in a stack (one line), or None: it stacks
    not_stacked: str | None = None
    #: the members of a stack that use it, in order; None: every member (an ordinary run's one)
    users: list[int] | None = None

    # --- the hooks, over a member axis -------------------------------------------------------------------
    def setup(self, model: nn.Module) -> None:
        """Called once on the freshly built model, before the optimizer exists."""

    def perturb(self, x: Tensor, members: Members) -> Tensor:
        """Training inputs (N, S, ...), normalised; return the perturbed batch."""
        return x

    def train_forward(self, model: nn.Module, x: Tensor, members: Members) -> Tensor | None:
        """Training forward pass replacing ``model(x)``; ``None`` keeps the plain one."""
        return None

    def member_penalty(
        self, model: nn.Module, inputs: Tensor, logits: Tensor, targets: Tensor, members: Members
    ) -> Tensor | None:
        """(S,) added to each member's loss (0 for members without it); ``None`` adds nothing. ``inputs``: the
        tensor ``logits`` (N, S, K) came from; targets (N, S)."""
        return None

    def after_step(self, model: nn.Module, step: int, alive: Sequence[bool] | None = None) -> list[int]:
        """After optimizer step ``step`` (members not ``alive`` are left alone); returns members found diverged."""
        return []

    def callbacks(self) -> list[L.Callback]:
        return []

    # --- the plain case: an ordinary run, no member axis ---------------------------------------------------
    def perturb_inputs(self, x: Tensor) -> Tensor:
        """Training inputs (N, ...), normalised; return the perturbed batch."""
        return self.perturb(x.unsqueeze(1), ONE).squeeze(1)

    def forward(self, model: nn.Module, x: Tensor) -> Tensor | None:
        return self.train_forward(model, x, ONE)

    def penalty(self, model: nn.Module, inputs: Tensor, logits: Tensor, targets: Tensor) -> Tensor | None:
        """Scalar added to the training loss; logits (N, K), targets (N,)."""
        value = self.member_penalty(model, inputs, _axis(logits), _axis(targets), ONE)
        return None if value is None else value.squeeze(0)

    # --- a stack: one regularizer of this kind for S members -----------------------------------------------
    @classmethod
    def stack(cls, regs: Sequence[Regularizer | None]) -> Regularizer:
        """This kind of regularizer for a stack: ``regs[s]`` is member s's (None where it has none). Its
        ``per_member`` values become (S,) float64 tensors (0 for members without it), ``users`` the members
        with it; ``shared`` settings must agree (one-line ``ValueError`` otherwise)."""
        reason = cls.why_not_stacked()
        if reason:
            raise ValueError(f"reg.{cls.name} does not stack: {reason}")
        users = [s for s, r in enumerate(regs) if r is not None]
        first = regs[users[0]]
        for key in cls.shared:
            values = {repr(getattr(regs[s], key)) for s in users}
            if len(values) > 1:
                raise ValueError(f"the members of a stack use different reg.{cls.name}.{key} ({sorted(values)})")
        out = copy.copy(first)
        for key in cls.per_member:
            values = [float(getattr(r, key)) if r is not None else 0.0 for r in regs]
            setattr(out, key, torch.tensor(values, dtype=torch.float64))
        out.users = users
        return out

    @classmethod
    def why_not_stacked(cls) -> str | None:
        """``not_stacked``, or why a regularizer written for the plain case only (it overrides ``perturb_inputs``,
        ``forward`` or ``penalty``, not their member-axis hooks) cannot stack; None: it stacks."""
        plain = [h for h in ("perturb_inputs", "forward", "penalty") if getattr(cls, h) is not getattr(Regularizer, h)]
        if cls.not_stacked or not plain:
            return cls.not_stacked
        return f"it defines {', '.join(plain)} for an ordinary run only (no member axis)"

    def to_(self, device) -> Regularizer:
        """Move a stack's per-member tensors to ``device`` (once, not per step)."""
        for key in self.per_member:
            value = getattr(self, key)
            if isinstance(value, Tensor):
                setattr(self, key, value.to(device))
        return self

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class WeightPenalty(Regularizer):
    """λ_s · m_s: a measure m (S,) of each member's weights (``measure``) times its coefficient ``lam`` (L1, soft
    SVB)."""

    per_member = ("lam",)

    def __init__(self, lam: float):
        self.lam = check_positive(f"reg.{self.name}.lam", lam)

    def measure(self, model: nn.Module) -> Tensor:
        """(S,), one value per member; S = 1 for an ordinary model."""
        raise NotImplementedError

    def member_penalty(self, model: nn.Module, inputs, logits, targets, members: Members) -> Tensor:
        value = self.measure(model)
        return per_member(self.lam, value) * value


def check_positive(name: str, value: float, *, allow_zero: bool = True) -> float:
    """One-line error for a bad hyper-parameter (negative, or zero where not allowed)."""
    ok = value >= 0 if allow_zero else value > 0
    if not ok or value != value or value in (float("inf"), float("-inf")):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ValueError(f"{name}={value!r} is invalid: it must be a finite number {bound}")
    return float(value)


#: the layers whose weight ``weight_matrices`` knows: the dense ones and LeNet-5's sparse convolution
WEIGHT_LAYERS = (*DENSE_LAYERS, SparseConv2d)


def has_member_axis(m: nn.Module) -> bool:
    """A stack's layer (regnet/stacked/layers.py) holds its members' parameters on a leading axis and says so
    with ``member_axis = True``; those of ``WEIGHT_LAYERS`` also say ``weight_layer = True``."""
    return bool(getattr(m, "member_axis", False))


def weight_layers(model: nn.Module, regularizer: str = "weight_matrices") -> list[tuple[str, nn.Module]]:
    """Every layer with a weight matrix, (name, module) in ``model.named_modules()`` order: Linear, Conv1d/2d/3d
    and ``SparseConv2d`` (or a stack's layers of these). A weight matrix is a parameter with ≥ 2 dimensions (not
    counting a member axis); biases and normalisation or subsampling scales (1-D) are not. A module that owns a
    ≥ 2-D parameter and is none of these layers raises a one-line ``ValueError`` naming it and ``regularizer``:
    nothing is skipped without a word."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, WEIGHT_LAYERS) or getattr(m, "weight_layer", False):
            out.append((name, m))
            continue
        for pname, p in m.named_parameters(recurse=False):
            if p.dim() - has_member_axis(m) >= 2:
                where = f"{name}.{pname}" if name else pname
                known = ", ".join(t.__name__ for t in WEIGHT_LAYERS)
                raise ValueError(
                    f"{regularizer} does not know the layer {name or type(m).__name__!r} ({type(m).__name__}, "
                    f"{where} of shape {tuple(p.shape)}): it handles the weights of {known} only"
                )
    return out


def is_sparse(m: nn.Module) -> bool:
    """LeNet-5's ``SparseConv2d`` (or a stack of them): its applied weight is ``weight · mask``."""
    return isinstance(m, SparseConv2d) or getattr(m, "mask", None) is not None


def member_weight_matrices(
    model: nn.Module, regularizer: str = "weight_matrices"
) -> list[tuple[str, nn.Module, Tensor]]:
    """``weight_matrices`` with a member axis: (name, module, W (S, out, in·k·k)); S = 1 for an ordinary model."""
    out = []
    for name, m in weight_layers(model, regularizer):
        w = m.weight * m.mask if is_sparse(m) else m.weight
        w = w if has_member_axis(m) else w.unsqueeze(0)
        out.append((name, m, w.view(w.shape[0], w.shape[1], -1)))
    return out


def weight_matrices(model: nn.Module, regularizer: str = "weight_matrices") -> list[tuple[str, nn.Module, Tensor]]:
    """Every layer's weight as a matrix: (name, module, W of shape out × in·k·k), layers as ``weight_layers``.

    For Linear/Conv layers W is a view of the weight, so in-place edits of the matrix edit the layer. For a
    ``SparseConv2d`` W is the weight the layer applies, ``weight · mask``: a new tensor (differentiable) whose
    unconnected entries are 0 and get no gradient, so a penalty on it leaves them at 0; it cannot be edited in
    place (SVB refuses such layers).
    """
    return [(name, m, w.squeeze(0)) for name, m, w in member_weight_matrices(model, regularizer)]


def _replaces_forward(cls: type) -> bool:
    return cls.train_forward is not Regularizer.train_forward or cls.forward is not Regularizer.forward


def check_composition(regularizers: Sequence[Regularizer]) -> None:
    """One-line ``ValueError`` if more than one regularizer replaces the training forward pass (overrides
    ``train_forward``): the module can run only one of them, and the others would be dropped without a word."""
    replacing = [r.name for r in regularizers if _replaces_forward(type(r))]
    if len(replacing) > 1:
        names = ",".join(r.name for r in regularizers)
        raise ValueError(
            f"reg=[{names}]: {' and '.join(replacing)} each replace the training forward pass and only one can; "
            "keep one of them"
        )


__all__ = [
    "ONE",
    "WEIGHT_LAYERS",
    "Members",
    "Regularizer",
    "WeightPenalty",
    "check_composition",
    "check_positive",
    "member_weight_matrices",
    "per_member",
    "weight_layers",
    "weight_matrices",
]
