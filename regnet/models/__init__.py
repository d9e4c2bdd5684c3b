"""Models: one model, or one model family, per file; one YAML per model in ``conf/model/<name>.yaml``.

Every model takes ``in_channels`` and ``num_classes`` (filled from the data config) and maps a normalised
float batch (N, C, H, W) to logits (N, num_classes). Each registers itself in its file with
``@register_model("<name>")`` (:mod:`regnet.models.registry`); ``MODELS`` is that registry, name → class: the
name is the YAML's (``model=<name>``) and what ``results.json`` records. Initialisations live in
``regnet.models.init``.
"""

from __future__ import annotations

# importing each model file registers its models
from regnet.models import convnet, lenet, lenet5, resnet18, simplenet, small_cnn  # noqa: F401
from regnet.models.registry import MODELS, register_model, registered_name

__all__ = ["MODELS", "register_model", "registered_name"]
