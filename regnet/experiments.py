"""What an experiment (a study, ``conf/experiment/<name>.yaml``) declares about itself: its variants.

Each experiment lists its ``variants`` (the ``variant=`` choices its study ran); a variant from another study
would compose silently (``experiment=hoffman2019_mnist variant=cosine`` set an Adam-study schedule on the SGD
study), so it is an error.
"""

from __future__ import annotations

from omegaconf import DictConfig


def check_variant(cfg: DictConfig) -> None:
    """One line naming the experiment's variants when ``cfg.variant`` is not one of them; configs without an
    experiment (or written before experiments listed their variants) pass."""
    variants = cfg.get("variants") if "variants" in cfg else None
    if variants and cfg.get("variant") not in variants:
        raise ValueError(
            f"variant={cfg.variant} is not a variant of experiment={cfg.task_name}: choose one of {', '.join(variants)}"
        )
