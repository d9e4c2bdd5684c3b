"""A stack's regularizers: the members' regularizers of each kind as one (``Regularizer.stack``, defined once
in ``regnet/regularizers/base.py``), each member with its own coefficient (0 where the member does not use it),
so members may differ in λ, β, ε, σ, weight decay and in SVB's ε and ``every``, and in which regularizers they
use at all. The formulas are the regularizers' own, written over the member axis; random draws come from each
member's own generator, in the order its separate run draws them from the global one.
"""

from __future__ import annotations

from collections.abc import Sequence

from regnet.regularizers.base import Regularizer, check_composition


def stack_regularizers(member_regs: Sequence[Sequence[Regularizer]]) -> list[Regularizer]:
    """``member_regs[s]``: member s's regularizers → one stacked regularizer per kind, in the order the kinds
    first appear; one-line ``ValueError`` for a kind that does not stack or whose shared settings differ."""
    kinds: dict[type, dict[int, Regularizer]] = {}
    for s, regs in enumerate(member_regs):
        for r in regs:
            kinds.setdefault(type(r), {})[s] = r
    stacked = [cls.stack([by_member.get(s) for s in range(len(member_regs))]) for cls, by_member in kinds.items()]
    check_composition(stacked)  # one forward replacement among all members' regularizers
    return stacked


def has_penalty(reg: Regularizer) -> bool:
    """Whether ``reg`` adds to the loss (logged as ``train/<name>``)."""
    return type(reg).member_penalty is not Regularizer.member_penalty


def member_weight_decay(member_regs: Sequence[Sequence[Regularizer]]) -> list[float]:
    """Each member's weight decay, the sum of its regularizers' (as ``RegNetModule.configure_optimizers``)."""
    return [sum(r.weight_decay for r in regs) for regs in member_regs]


__all__ = ["has_penalty", "member_weight_decay", "stack_regularizers"]
