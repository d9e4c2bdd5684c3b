"""Save the test confusion matrix (CSV and PNG) into the run directory when testing ends.

Accumulated on the device with torchmetrics' MulticlassConfusionMatrix from the logits that
``RegNetModule.test_step`` returns (synchronised across processes under DDP); rows = true class,
columns = predicted class.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from torchmetrics.classification import MulticlassConfusionMatrix


class ConfusionMatrix(L.Callback):
    def __init__(self, dirpath: str | None = None, filename: str = "confusion_matrix"):
        self.dirpath, self.filename = dirpath, filename
        self.metric: MulticlassConfusionMatrix | None = None

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.metric = MulticlassConfusionMatrix(pl_module.num_classes).to(pl_module.device)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if outputs is None or self.metric is None:
            return
        _, y = batch
        self.metric.update(outputs.detach(), y)  # logits (N, C), labels (N,)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.metric is None or not self.metric.update_called:
            return
        matrix = self.metric.compute().cpu().numpy()  # (C, C)
        self.metric = None
        if not trainer.is_global_zero:
            return
        import pandas as pd

        from regnet.analysis.plots import plot_matrix, save_figure
        from regnet.results import write_atomic

        out = Path(self.dirpath or trainer.default_root_dir)
        write_atomic(out / f"{self.filename}.csv", pd.DataFrame(matrix).to_csv())
        save_figure(plot_matrix(matrix, "test confusion matrix (rows: true, columns: predicted)"), out / f"{self.filename}.png")
