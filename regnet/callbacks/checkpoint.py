"""``checkpoints/last.ckpt``: what a killed run resumes from, written so that the resumed run equals one that
never stopped.

Lightning's ``ModelCheckpoint(save_top_k=0, save_last=True)`` does not do this, for three reasons:

- It saves ``last`` at an epoch end only when it also saved a top-k checkpoint there, so with ``save_top_k=0`` no
  checkpoint was written at epoch ends (Lightning 2.6), and a second instance saving at train end wrote
  ``last-v1.ckpt``, a file nothing resumes from.
- A step checkpoint that falls on an epoch's last batch is taken before validation and before the epoch's metrics
  are logged and reset; a run resumed from it carried that epoch's running training counts into the next epoch's
  numbers. Here such a step checkpoint is left to the epoch-end one that follows.
- Lightning writes to a temporary file in ``$TMPDIR`` and moves it over the checkpoint. When ``$TMPDIR`` is on another
  filesystem than the run (node-local ``/tmp``, shared outputs), the move copies in place, so a kill leaves a
  truncated checkpoint. Here the new checkpoint is written beside the old one and renamed over it (atomic).

Each checkpoint also carries the metrics logged so far (``trainer.callback_metrics``). A run killed during its test
resumes from the final checkpoint, where ``fit`` has nothing left to train and logs nothing: :func:`fit_metrics`
then reads the last epoch's training and validation metrics from the checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint

LAST = "last.ckpt"
METRICS_KEY = "regnet_fit_metrics"


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


class LastCheckpoint(Checkpoint):
    """Writes ``<dirpath>/last.ckpt`` atomically at the end of every ``every_n_epochs``-th training epoch (and of
    training), and every ``every_n_train_steps`` optimizer steps (0: never) except at an epoch's last batch.

    Two instances may share ``dirpath`` (one per trigger, as ``conf/callbacks/default.yaml`` has them): they write the
    same file. A ``Checkpoint`` subclass, so Lightning adds no default ``ModelCheckpoint`` of its own and calls its
    epoch-end hook after the LightningModule's, which logs and resets the epoch's metrics.
    """

    def __init__(self, dirpath: str | os.PathLike, every_n_epochs: int = 1, every_n_train_steps: int = 0):
        for name, value in (("every_n_epochs", every_n_epochs), ("every_n_train_steps", every_n_train_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"callbacks: {name}={value!r} is invalid: it must be an integer >= 0 (0 = never)")
        self.dirpath = Path(dirpath)
        self.every_n_epochs = every_n_epochs
        self.every_n_train_steps = every_n_train_steps
        self.restored_metrics: dict[str, float] = {}  # carried by the checkpoint this fit resumed from
        self._saved_step: int | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(
            every_n_epochs=self.every_n_epochs, every_n_train_steps=self.every_n_train_steps
        )

    @property
    def path(self) -> Path:
        return self.dirpath / LAST

    @property
    def temp_path(self) -> Path:
        """Where a checkpoint is written before it is renamed over :attr:`path`: beside it, so the rename is
        atomic; one fixed name (one process trains a run at a time), so a killed write leaves nothing to pile up."""
        return self.dirpath / f".{LAST}.tmp"

    # --- when -----------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.is_global_zero:
            self.temp_path.unlink(missing_ok=True)  # a write killed before its rename

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._saved_step = trainer.global_step  # the restored step of a resumed run is on disk already

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        n = self.every_n_train_steps
        if n and trainer.global_step % n == 0 and not _ends_epoch(trainer, batch_idx):
            self.save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        n = self.every_n_epochs
        if n and (trainer.current_epoch + 1) % n == 0:
            self.save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_epochs and self._saved_step != trainer.global_step:
            self.save(trainer)  # the final state, whatever every_n_epochs skipped

    # --- what and how -----------------------------------------------------------------------------------
    def save(self, trainer: L.Trainer) -> None:
        """Write the trainer's checkpoint to :attr:`temp_path`, then rename it over :attr:`path` (rank 0)."""
        try:
            # a full checkpoint (optimizer, loops, callbacks): say so, or Lightning logs a line at every save
            trainer.save_checkpoint(self.temp_path, weights_only=False)  # every rank takes part; rank 0 writes
            if trainer.is_global_zero:
                fd = os.open(self.temp_path, os.O_RDONLY)
                try:
                    os.fsync(fd)  # on disk before the rename, so a machine crash leaves the old file or the new one
                finally:
                    os.close(fd)
                os.replace(self.temp_path, self.path)
        except BaseException:  # a full disk, an interrupt: the previous checkpoint stays, the partial one goes
            if trainer.is_global_zero:
                self.temp_path.unlink(missing_ok=True)
            raise
        trainer.strategy.barrier("LastCheckpoint.save")
        self._saved_step = trainer.global_step

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[METRICS_KEY] = _floats(trainer.callback_metrics)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.restored_metrics = dict(checkpoint.get(METRICS_KEY, {}))


def _ends_epoch(trainer: L.Trainer, batch_idx: int) -> bool:
    """Whether this training batch is the epoch's last one (end of data, ``limit_train_batches`` or ``max_steps``)."""
    max_steps = trainer.max_steps
    return (
        trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        or batch_idx + 1 >= trainer.num_training_batches
        or (max_steps is not None and max_steps > 0 and trainer.global_step >= max_steps)
    )


def fit_metrics(trainer: L.Trainer) -> dict[str, float]:
    """The metrics of a run's last training epoch once ``trainer.fit`` returned (training and validation): those
    logged in this process, completed by those the checkpoint it resumed from carried. A fit resumed from the final
    checkpoint (a run killed during its test) logs nothing; its metrics are the checkpoint's."""
    restored = next(
        (cb.restored_metrics for cb in trainer.callbacks if isinstance(cb, LastCheckpoint) and cb.restored_metrics), {}
    )
    return restored | _floats(trainer.callback_metrics)
