"""Read a checkpoint without running its author's code: ``torch.load(..., weights_only=True)`` unless trusted.

A checkpoint is a pickle, and unpickling can call any function the file names (``os.system``,
``pathlib.Path.touch``). PyTorch's weights-only unpickler accepts only tensors, plain Python values and the
classes allowlisted with ``torch.serialization.add_safe_globals``; everything regnet writes into a checkpoint is
of those kinds, so a refusal means the file holds something regnet did not put there.

    state = load_checkpoint(path)                 # weights only; raises UntrustedCheckpoint if it needs more
    state = load_checkpoint(path, trust=True)     # the caller said it trusts the file (trust_checkpoint=true)

Every place regnet reads a checkpoint goes through :func:`load_checkpoint`; Lightning's own loading (resume,
``ckpt_path=``) gets ``Trainer.fit(..., weights_only=not trust)``.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

OPT_IN = "trust_checkpoint=true"


class UntrustedCheckpoint(ValueError):
    """A checkpoint that cannot be loaded weights-only: one line naming the file, the global it needs, and how
    to opt in (``opt_in``: the key or flag of the entry point that raised it)."""

    def __init__(self, path: str | Path, needs: str, opt_in: str = OPT_IN):
        self.path, self.needs, self.opt_in = str(path), needs, opt_in
        super().__init__(
            f"refusing to load {self.path}: it cannot be loaded weights-only (it needs {needs}, which unpickling "
            f"could use to run code); if you trust whoever wrote it, opt in with {opt_in}"
        )

    def __reduce__(self):  # sent back pickled from a sweep's worker processes
        return UntrustedCheckpoint, (self.path, self.needs, self.opt_in)


def refusal(err: BaseException) -> str | None:
    """What a weights-only load refused (``"the global os.system"``), or None if ``err`` is not such a refusal
    (a truncated or corrupt file, which trusting would not make loadable)."""
    text = str(err)
    if not isinstance(err, pickle.UnpicklingError) or "Weights only load failed" not in text:
        return None
    found = re.search(r"GLOBAL (\S+)", text) or re.search(r"allowlisted via add_safe_globals, but got (\S+)", text)
    if found:
        return f"the global {found.group(1).rstrip('.,')}"
    if "allowlisted" in text:
        return "a class that is not allowlisted"
    return None


def load_checkpoint(
    path: str | Path, *, trust: bool = False, map_location: Any = "cpu", opt_in: str = OPT_IN
) -> dict[str, Any]:
    """The checkpoint at ``path``, loaded with ``torch.load(weights_only=not trust)``.

    Raises :class:`UntrustedCheckpoint` (a ValueError, one line) if it holds anything the weights-only
    unpickler refuses; other errors (a missing, truncated or corrupt file) propagate unchanged.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=not trust)
    except pickle.UnpicklingError as err:
        needs = refusal(err)
        if needs is None:
            raise
        raise UntrustedCheckpoint(path, needs, opt_in) from None
