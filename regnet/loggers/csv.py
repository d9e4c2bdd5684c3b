"""``metrics.csv`` that survives a resume.

Lightning's CSVLogger deletes ``metrics.csv`` when it opens a directory that already has one. A run resumed from
``checkpoints/last.ckpt`` therefore kept only the epochs after the interruption, and its learning curves started
in the middle. This logger keeps the rows already written and appends to them. The steps between the checkpoint
and the interruption are trained again and logged again. When the run ends, :meth:`CSVLogger.finalize` keeps only
the last of the rows that share a step and the same columns (rewritten atomically). The finished file then reads
as if the run had never stopped. A run that trains from scratch (first time, ``force=true``, unreadable
checkpoint) gets a fresh file from :meth:`CSVLogger.start_fresh`, as with Lightning's logger.

The run's ``tags`` (``tags=[...]``) go into ``hparams.yaml`` beside ``metrics.csv``, as Lightning's CSVLogger writes
hyper-parameters (the rest of the config is in ``results.json``).

Two more differences keep a killed run's rows. Every row is written to disk as soon as it is logged
(``flush_logs_every_n_steps=1``): Lightning's logger held rows that callbacks log directly, such as
LearningRateMonitor's learning rate, in memory until the next epoch's metrics, so a run killed in between and
resumed from a later checkpoint lost them. And when a new column appears, the file is rewritten with the new
header atomically (temporary file, then rename), so a kill during the rewrite leaves the old file whole.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from regnet.files import replacing


class _AppendingWriter(ExperimentWriter):
    """Appends to an existing ``metrics.csv``, whose header gives the columns so far."""

    def _check_log_dir_exists(self) -> None:  # called by __init__; Lightning's deletes the file here
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = sorted(csv.DictReader(f).fieldnames or [])

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:  # Lightning's rewrites in place
        with open(self.metrics_file_path, newline="") as f:
            rows = list(csv.DictReader(f))
        _write_atomic_csv(Path(self.metrics_file_path), fieldnames, rows)


class CSVLogger(LightningCSVLogger):
    """Lightning's CSVLogger (same arguments, same file), keeping earlier rows when a run resumes and writing
    every row as soon as it is logged (``flush_logs_every_n_steps`` defaults to 1, not 100); ``tags`` (if any)
    are written to ``hparams.yaml``."""

    def __init__(self, *args, flush_logs_every_n_steps: int = 1, tags: Sequence[str] | None = None, **kwargs):
        super().__init__(*args, flush_logs_every_n_steps=flush_logs_every_n_steps, **kwargs)
        self._tags = [str(t) for t in tags or []]

    @property
    @rank_zero_experiment
    def experiment(self) -> _AppendingWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
            if self._tags:
                self._experiment.log_hparams({"tags": self._tags})
        return self._experiment

    @property
    def metrics_file(self) -> Path:
        return Path(self.log_dir) / ExperimentWriter.NAME_METRICS_FILE

    @rank_zero_only
    def start_fresh(self) -> None:
        """Before training from scratch: remove the ``metrics.csv`` of an earlier attempt."""
        self.metrics_file.unlink(missing_ok=True)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        super().finalize(status)
        drop_repeated_rows(self.metrics_file)


def drop_repeated_rows(path: Path) -> None:
    """Keep the last of the rows of a Lightning ``metrics.csv`` that have the same step and the same non-empty
    columns (a resumed run logs the steps after its checkpoint again); atomic rewrite, only if any repeat."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames or [], list(reader)
    last = {}
    for i, row in enumerate(rows):
        last[(row.get("step"), frozenset(k for k, v in row.items() if v not in ("", None)))] = i
    if len(last) == len(rows):
        return
    _write_atomic_csv(path, fields, [rows[i] for i in sorted(last.values())])


def _write_atomic_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    """Replace ``path`` by a CSV of ``rows``, atomically (:func:`regnet.files.replacing`)."""
    with replacing(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
