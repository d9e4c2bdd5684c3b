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

    def __reduce__(self):  # a sweep's worker processes (joblib, submitit) send it back pickled
        return Diverged, (self.step, self.loss)


CONF = Path(__file__).resolve().parents[1] / "conf"


def options(group: str) -> list[str]:
    """The configs of a group in ``conf/`` (``"model"``, ``"hydra/launcher"``); ``_base_`` files hold shared keys
    and are no choice."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))


SUBMITIT_LAUNCHERS = {"submitit_slurm": "slurm", "submitit_local": "submitit_cpu"}  # its configs: our presets


def root_cause(err: BaseException) -> BaseException:
    """The innermost exception: Hydra's InstantiationException wraps the constructor's own error."""
    while err.__cause__ is not None and type(err).__name__ in ("InstantiationException", "ConfigCompositionException"):
        err = err.__cause__
    return err


def _os_error(err: BaseException) -> OSError | None:
    """An OSError behind ``err`` (logging's "Unable to configure handler 'file'" hides a PermissionError)."""
    while err is not None and not isinstance(err, OSError):
        err = err.__cause__ or err.__context__
    return err


def squeeze(text: object) -> str:
    """``text`` (an exception, a reason) on one line: its white space, line breaks included, folded to single
    spaces; an exception without a message gives its type's name."""
    line = " ".join(str(text).split())
    return line or (type(text).__name__ if isinstance(text, BaseException) else "")


def headline(err: BaseException) -> str:
    """``<type>: <message>``, the message's first line only: how a run's record (``error`` in results.json) and the
    ``TrainingFailed`` raised after it name the exception that stopped training."""
    return f"{type(err).__name__}: {err}".splitlines()[0]


def one_line(err: BaseException) -> str:
    """The exception that stopped ``regnet.train`` as the line the command prints (module docstring)."""
    cause = root_cause(err)
    text = str(cause).strip()
    missing = re.search(r"Could not (?:find|load) '([\w/]+)/([^'/]+)'", text)
    if missing:
        group, name = missing.groups()
        group = group.removeprefix("hydra/config/") if group.startswith("hydra/config/") else group
        if group == "hydra/launcher" and name in SUBMITIT_LAUNCHERS:  # the base config of our preset is missing
            return (
                f"hydra/launcher={SUBMITIT_LAUNCHERS[name]} needs hydra-submitit-launcher, which is not installed: "
                "pip install 'regnet[slurm]'"
            )
        listed = re.search(r"Available options in '[^']+':\n((?:\t.*\n?)+)", text)
        available = [o for o in listed.group(1).split() if not o.startswith("_")] if listed else options(group)
        shown = group.split("/")[-1] if not group.startswith("hydra/") else group
        return f"unknown {shown} '{name}' (available: {', '.join(available)}); choose with {group}=<name>"
    full_key = re.search(r"full_key: (\S+)", text) if "not in struct" in text else None
    typo = full_key or re.search(r"Could not override '([^']+)'", text)
    if typo:
        key = typo.group(1)
        return (
            f"unknown config key '{key}': check the spelling (python -m regnet.train --cfg job prints every key), "
            f"or add a new key with +{key}=..."
        )
    exists = re.search(r"An item is already at '([^']+)'", text)
    if exists:
        key = exists.group(1)
        return f"+{key}=... adds a new key, but {key} exists: set it with {key}=... (or ++{key}=...)"
    if text.startswith("Unable to configure handler") and (os_err := _os_error(cause)) is not None:
        return f"cannot write the run's log file: {os_err} (choose a writable run directory with hydra.run.dir=...)"
    first = text.splitlines()[0] if text else type(cause).__name__
    if type(cause).__name__ not in (
        "ValueError",
        "DatasetNotFoundError",
        "CorruptDatasetError",
        "FileNotFoundError",
        "InvalidJob",
    ):
        first = f"{type(cause).__name__}: {first}"
    return first
