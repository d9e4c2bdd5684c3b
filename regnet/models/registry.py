"""The model registry, name → class (timm's ``@register_model`` habit): each model registers itself in its own
file, and everything that lists models reads ``MODELS``: ``conf/model/<name>.yaml`` targets ``MODELS[name]``
(a test holds the two equal), ``results.json`` records the name, the tests are parametrised over it, and the
stackability check (regnet/stacked/layers.py) asks it which ``forward`` functions are layout-safe.

    @register_model("lenet")
    class LeNet(nn.Module): ...

``stacks``: the model's own ``forward`` was read and only chains its children, flattens from dim 1, adds
residuals or applies an element-wise function, so a stacked (wide) copy of its layers computes every member
unchanged; ``reads``: the other ``forward`` functions it runs that were read the same way (torchvision's
ResNet); ``refusal``: a setting under which an instance cannot stack, as one line (or None).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

M = TypeVar("M", bound=type[nn.Module])

MODELS: dict[str, type[nn.Module]] = {}
_LAYOUT_SAFE: set[Callable] = set()
_REFUSALS: dict[type[nn.Module], Callable[[nn.Module], str | None]] = {}


def register_model(
    name: str,
    *,
    stacks: bool = True,
    reads: tuple[Callable, ...] = (),
    refusal: Callable[[nn.Module], str | None] | None = None,
) -> Callable[[M], M]:
    """Class decorator: ``model=<name>`` builds the class (module docstring for ``stacks``, ``reads``,
    ``refusal``). A name registered twice is a ValueError."""

    def add(cls: M) -> M:
        if name in MODELS and MODELS[name] is not cls:
            raise ValueError(f"model {name!r} is registered twice: {MODELS[name].__qualname__}, {cls.__qualname__}")
        MODELS[name] = cls
        if stacks:
            _LAYOUT_SAFE.update((cls.forward, *reads))
        if refusal is not None:
            _REFUSALS[cls] = refusal
        return cls

    return add


def registered_name(cls: type) -> str | None:
    """The registry's name for a model class, or None if it is not registered."""
    return next((name for name, registered in MODELS.items() if registered is cls), None)


def layout_safe_forwards() -> frozenset[Callable]:
    """The ``forward`` functions of the registered models that stack, and those they read."""
    return frozenset(_LAYOUT_SAFE)


def stack_refusal_of(module: nn.Module) -> str | None:
    """Why this instance of a registered model cannot stack (its ``refusal``), or None."""
    refusal = _REFUSALS.get(type(module))
    return refusal(module) if refusal is not None else None
