"""TensorBoard event files in ``<run dir>/tensorboard/``, one TensorBoard run per regnet run.

Lightning's TensorBoardLogger, with what a regnet run needs on top (:mod:`regnet.loggers.resume`): a run trained
from scratch removes the event files of an earlier attempt; a resumed run appends to the same directory, and
TensorBoard hides the events the interrupted attempt logged after the checkpoint it resumes from (``purge_step``),
so no epoch appears twice. The resolved config is written as hyper-parameters (the HParams dashboard, with the
final test metrics as its metrics), the test confusion matrix as an image.

    tensorboard --logdir outputs/        # every run, named by its directory
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.fabric.utilities.logger import _convert_params, _flatten_dict
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

#: the metrics the HParams dashboard shows beside each run's hyper-parameters (scalars logged by the test)
HPARAM_METRICS = ("test/acc", "test/loss", "val/acc")


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's TensorBoardLogger in ``<save_dir>/tensorboard``; no ``hp_metric`` placeholder scalar."""

    def __init__(
        self,
        save_dir: str,
        name: str = "tensorboard",
        version: str = "",
        default_hp_metric: bool = False,
        **kwargs: Any,
    ):
        super().__init__(save_dir, name=name, version=version, default_hp_metric=default_hp_metric, **kwargs)

    @rank_zero_only
    def start_fresh(self) -> None:
        """Before training from scratch: remove the event files (and hparams.yaml) of an earlier attempt."""
        log_dir = Path(self.log_dir)
        for path in [*log_dir.glob("events.out.tfevents.*"), log_dir / self.NAME_HPARAMS_FILE]:
            path.unlink(missing_ok=True)

    def resume(self, step: int | None) -> None:
        """Resuming from a checkpoint at global ``step``: TensorBoard drops the events logged after it."""
        if step is not None and self._experiment is None:
            self._kwargs["purge_step"] = step + 1

    @property
    def experiment(self):
        writer = super().experiment
        self._kwargs.pop("purge_step", None)  # the first writer of the attempt purges; later ones (test) must not
        return writer

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: Any = None) -> None:
        super().log_hyperparams(params, metrics)
        if metrics is not None or not params:  # Lightning wrote the summary, or there is nothing to write
            return
        from torch.utils.tensorboard.summary import hparams

        flat = self._sanitize_params(_flatten_dict(_convert_params(params)))
        writer = self.experiment._get_file_writer()
        for summary in hparams(flat, dict.fromkeys(HPARAM_METRICS, 0.0)):
            writer.add_summary(summary)

    @rank_zero_only
    def end(self, status: str, files: list[Path]) -> None:
        """At the end of the run: the figures as images, then everything on disk."""
        import numpy as np
        from PIL import Image

        for path in files:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
            self.experiment.add_image(f"test/{path.stem}", pixels, dataformats="HWC")
        self.experiment.flush()
