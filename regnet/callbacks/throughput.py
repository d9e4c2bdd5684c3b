"""Training throughput (images/s) over the training epochs, timed at epoch boundaries only."""

from __future__ import annotations

import time

import lightning as L
import torch


class Throughput(L.Callback):
    """Counts training images and wall time between ``on_train_epoch_start`` and ``on_train_epoch_end``.

    The device is synchronised only at those two points, never per step. ``images_per_s`` is read by the
    training script for ``results.json``; it is also logged as ``train/images_per_s`` per epoch. A run resumed
    mid-epoch gets no ``on_train_epoch_start`` from Lightning, so the clock also starts at ``on_train_start``:
    the resumed epoch's number covers the batches trained after the resume.
    """

    def __init__(self):
        self.images = 0
        self.seconds = 0.0
        self._start = 0.0
        self._epoch_images = 0

    @staticmethod
    def _sync(pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_start(self, trainer, pl_module) -> None:
        self.on_train_epoch_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._sync(pl_module)
        self._start = time.perf_counter()
        self._epoch_images = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._epoch_images += len(batch[1])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._sync(pl_module)
        elapsed = time.perf_counter() - self._start
        self.images += self._epoch_images * trainer.world_size
        self.seconds += elapsed
        if elapsed > 0:
            pl_module.log("train/images_per_s", self._epoch_images * trainer.world_size / elapsed, rank_zero_only=True)

    @property
    def images_per_s(self) -> float | None:
        return self.images / self.seconds if self.seconds > 0 else None
