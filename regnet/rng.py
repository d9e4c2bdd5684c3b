"""The random generators' states that travel with a checkpoint, so a resumed run draws what an uninterrupted one
draws (dropout masks, noise, projections): torch (CPU and CUDA), numpy and Python, as plain types (loadable with
``weights_only=True``). Both the ordinary and the stacked module save them under ``regnet_rng``."""

from __future__ import annotations

import random

import numpy as np
import torch


def rng_states() -> dict:
    """torch (CPU and CUDA), numpy and python RNG states as plain types (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, state, gauss = random.getstate()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": [version, list(state), gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


__all__ = ["rng_states", "set_rng_states"]
