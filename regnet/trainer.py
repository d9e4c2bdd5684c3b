"""The Lightning Trainer of a run or of a stack: one function, :func:`make_trainer`, that ``regnet.train`` and
``regnet.stacked.train`` both call, so what they share is written once.

Shared: ``cfg.trainer``'s keys, the callbacks of ``cfg.callbacks`` and the loggers of ``cfg.logger`` (a key set to
null is off), no validation loop when the data has no validation split (``limit_val_batches=0``), the root directory,
Lightning's SLURM auto-requeue switched off (regnet owns the signals: :func:`~regnet.signals.trainer_plugins`), and
checkpoints read weights-only unless ``trust_checkpoint=true`` (:func:`weights_only`, for ``fit``/``test``).

What a caller changes, it passes in, by name: the stack replaces each configured checkpoint callback by its own
and leaves out the ones that write into one run's directory (``adapt``), logs through its members' loggers
(``logger``), clips each member's gradients itself (``trainer_cfg`` without clipping) and records a member's
divergence in its module; the ordinary run adds :class:`~regnet.callbacks.divergence.DivergenceCheck`. Each passes
its :class:`~regnet.signals.CheckpointAtSignal` among its ``callbacks``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from regnet.signals import trainer_plugins


def configured(group: DictConfig | None) -> list[Any]:
    """The objects of a group of instances (``cfg.callbacks``, ``cfg.logger``), in order; ``key: null`` is off."""
    return [instantiate(c) for c in (group or {}).values() if c is not None]


def weights_only(cfg: DictConfig) -> bool:
    """Whether ``Trainer.fit``/``test`` load ``ckpt_path`` weights-only: yes, unless ``trust_checkpoint=true``."""
    return not cfg.get("trust_checkpoint")


def make_trainer(
    cfg: DictConfig,
    root_dir: Path,
    datamodule: L.LightningDataModule,
    callbacks: Iterable[L.Callback] = (),
    *,
    adapt: Callable[[L.Callback], L.Callback | None] | None = None,
    logger: Any = None,
    trainer_cfg: Any = None,
) -> L.Trainer:
    """The Trainer of ``trainer_cfg`` (default ``cfg.trainer``) in ``root_dir``, with ``cfg.callbacks``' callbacks
    (each passed through ``adapt``, which may replace it or drop it with None), then ``callbacks``; ``logger``
    (default: ``cfg.logger``'s loggers, or none)."""
    own = configured(cfg.callbacks)
    if adapt is not None:
        own = [a for a in map(adapt, own) if a is not None]
    loggers = (configured(cfg.logger) or False) if logger is None else logger
    no_val = {} if getattr(datamodule, "has_validation", False) else {"limit_val_batches": 0}
    trainer = instantiate(
        cfg.trainer if trainer_cfg is None else trainer_cfg,
        callbacks=[*own, *callbacks],
        logger=loggers,
        default_root_dir=str(root_dir),
        **no_val,
        **trainer_plugins(),
    )
    keep_deterministic_fast()
    skip_idle_step_hooks(trainer.callbacks)
    return trainer


#: the hooks Lightning calls on every callback at every batch
STEP_HOOKS = (
    *(f"on_{stage}_batch_{when}" for stage in ("train", "validation", "test", "predict") for when in ("start", "end")),
    *("on_before_backward", "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad"),
)


def skip_idle_step_hooks(callbacks: Iterable[L.Callback]) -> None:
    """Lightning calls every per-step hook of every callback, each inside a profiler context, whether or not the
    callback overrides it, and skips a hook that is not callable: set to None, on each callback, the per-step hooks
    its class inherits unchanged from ``Callback``, so a callback with nothing to do in a step costs nothing there
    (benchmarks/RESULTS.md: 87 → 15 µs a step for the four backward/optimizer hooks of regnet's callbacks)."""
    for callback in callbacks:
        for hook in STEP_HOOKS:
            if getattr(type(callback), hook) is getattr(L.Callback, hook) and hook not in vars(callback):
                setattr(callback, hook, None)  # (a hook set on the instance itself is kept)


def keep_deterministic_fast() -> None:
    """With ``trainer.deterministic`` (``torch.use_deterministic_algorithms``) torch also fills every new tensor
    with NaN (``torch.utils.deterministic.fill_uninitialized_memory``), only so that a read of uninitialised memory
    shows: ~70 extra fills per LeNet step. regnet reads none, so results are the same without them (torch's
    documentation says as much); the kernels stay the deterministic ones (benchmarks/RESULTS.md)."""
    torch.utils.deterministic.fill_uninitialized_memory = False
