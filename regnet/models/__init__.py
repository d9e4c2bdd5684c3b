"""Models: one model, or one model family, per file; one YAML per model in ``conf/model/<name>.yaml``.

Every model takes ``in_channels`` and ``num_classes`` (filled from the data config) and maps a normalised
float batch (N, C, H, W) to logits (N, num_classes). ``MODELS`` is the registry, name → class: the name is the
YAML's (``model=<name>``) and what ``results.json`` records; ``conf/model/<name>.yaml`` targets ``MODELS[name]``.
Initialisations live in ``regnet.models.init``.
"""

from __future__ import annotations

from torch import nn

from regnet.models.convnet import ConvNet
from regnet.models.lenet import LeNet
from regnet.models.lenet5 import LeNet5
from regnet.models.resnet18 import ResNet18
from regnet.models.simplenet import SimpleNet
from regnet.models.small_cnn import FAMILY

MODELS: dict[str, type[nn.Module]] = {
    "convnet": ConvNet,
    "lenet": LeNet,
    "lenet5": LeNet5,
    **{cls.name: cls for cls in FAMILY},
    "resnet18": ResNet18,
    "simplenet": SimpleNet,
}


def registered_name(cls: type) -> str | None:
    """The registry's name for a model class, or None if it is not registered."""
    return next((name for name, registered in MODELS.items() if registered is cls), None)


__all__ = ["MODELS", "registered_name"]
