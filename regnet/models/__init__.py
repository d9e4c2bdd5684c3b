"""Models: one file each, one YAML each in ``conf/model/``.

Every model takes ``in_channels`` and ``num_classes`` (filled from the data config) and maps a normalised
float batch (N, C, H, W) to logits (N, num_classes).
"""
