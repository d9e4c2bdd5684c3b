"""OmegaConf resolvers used by ``conf/`` (registered when ``regnet`` is imported)."""

from __future__ import annotations

from omegaconf import OmegaConf


def _dirname(overrides: str) -> str:
    """A run's directory name from its overrides; ``default`` when there are none."""
    return overrides.replace("/", "_") or "default"


def _on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def register_resolvers() -> None:
    for name, fn in (("regnet.dirname", _dirname), ("regnet.on_cpu", _on_cpu)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
