"""Turn any exception that stops ``regnet.train`` into one line a user can act on.

Hydra's own messages span many lines (search paths, hints); instantiation errors wrap ours. This module
digs out the cause and adds what is accepted: ``regnet: unknown model 'lenett' (available: lenet, ...)``.
Set ``HYDRA_FULL_ERROR=1`` for the full traceback instead.
"""

from __future__ import annotations

import re
from pathlib import Path


class Diverged(RuntimeError):
    """The training loss became NaN or Inf; ``step`` is the first optimizer step where it did (counted from 1,
    as ``trainer.global_step`` right after that step)."""

    def __init__(self, step: int, loss: float):
        super().__init__(f"training loss became {loss} at step {step}: the run diverged")
        self.step = step
        self.loss = loss


CONF = Path(__file__).resolve().parents[1] / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))  # _base_: shared keys


def root_cause(err: BaseException) -> BaseException:
    """The innermost exception: Hydra's InstantiationException wraps the constructor's own error."""
    while err.__cause__ is not None and type(err).__name__ in ("InstantiationException", "ConfigCompositionException"):
        err = err.__cause__
    return err


def one_line(err: BaseException) -> str:
    cause = root_cause(err)
    text = str(cause).strip()
    missing = re.search(r"Could not (?:find|load) '([\w/]+?)/([^']+)'", text)
    if missing:
        group, name = missing.groups()
        group = group.split("/")[-1]
        return f"unknown {group} '{name}' (available: {', '.join(options(group))}); choose with {group}=<name>"
    typo = re.search(r"Could not override '([^']+)'", text) or re.search(r"Key '([^']+)' (?:is not in struct|not in)", text)
    if typo:
        key = typo.group(1)
        return (f"unknown config key '{key}': check the spelling (python -m regnet.train --cfg job prints every key), "
                f"or add a new key with +{key}=...")
    first = text.splitlines()[0] if text else type(cause).__name__
    if type(cause).__name__ not in ("ValueError", "DatasetNotFoundError", "CorruptDatasetError", "FileNotFoundError"):
        first = f"{type(cause).__name__}: {first}"
    return first
