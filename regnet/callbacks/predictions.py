"""Save the test set's most and least confident right and wrong predictions as one figure, ``predictions.png``.

The ``k`` images of each gallery are kept on the device as the test batches go by (``regnet.predictions``);
under DDP each process keeps its own, and rank zero draws what it saw. The loggers receive the figure with the
confusion matrix at the end of the run (``regnet.loggers.resume.RUN_FILES``). lenet5_lecun turns it on.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L

from regnet.plotting import save_figure
from regnet.predictions import Kept, gallery_figure, keep_confident


class PredictionGallery(L.Callback):
    def __init__(self, enabled: bool = True, k: int = 5, dirpath: str | None = None, filename: str = "predictions.png"):
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"callbacks.predictions.k={k!r} is invalid: it must be a positive integer")
        self.enabled, self.k, self.dirpath, self.filename = enabled, k, dirpath, filename
        self.kept: Kept = {}

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.kept = {}

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.enabled and outputs is not None:
            x, y = batch
            self.kept = keep_confident(self.kept, outputs, x, y, self.k)  # outputs: the logits of test_step

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and self.kept:
            save_figure(gallery_figure(self.kept), Path(self.dirpath or trainer.default_root_dir) / self.filename)
        self.kept = {}
