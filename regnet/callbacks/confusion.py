"""Save the test confusion matrix (CSV and PNG) into the run directory when testing ends.

Each test batch's logits (what ``RegNetModule.test_step`` returns) are counted on the device with
``regnet.confusion.confusion_matrix``; at the end the counts are summed across processes (under DDP) and rank
zero writes them with ``regnet.confusion.write_confusion_matrix``. Rows = true class, columns = predicted class.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from regnet.confusion import confusion_matrix, write_confusion_matrix


class ConfusionMatrix(L.Callback):
    def __init__(self, dirpath: str | None = None, filename: str = "confusion_matrix"):
        self.dirpath, self.filename = dirpath, filename
        self.counts: Tensor | None = None

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        c = pl_module.num_classes
        self.counts = torch.zeros(c, c, dtype=torch.long, device=pl_module.device)  # on every process: all reduce

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if outputs is None or self.counts is None:
            return
        _, y = batch
        self.counts += confusion_matrix(outputs.detach(), y, pl_module.num_classes)  # logits (N, C), labels (N,)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.counts is None:
            return
        counts = trainer.strategy.reduce(self.counts, reduce_op="sum")  # every process's test batches
        self.counts = None
        if trainer.is_global_zero and int(counts.sum()) > 0:
            out = Path(self.dirpath or trainer.default_root_dir)
            write_confusion_matrix(counts, out, self.filename, "test confusion matrix (rows: true, columns: predicted)")
