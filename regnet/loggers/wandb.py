"""Weights & Biases, one W&B run per regnet run, offline too: ``WANDB_MODE=offline python -m regnet.train
logger=wandb`` writes the run under ``<run dir>/wandb/`` (``wandb sync <run dir>/wandb/offline-run-*`` uploads it).

Lightning's WandbLogger in project ``<task_name>`` (``experiment=lenet5_lecun`` logs to project lenet5_lecun), the
run named after its directory, grouped by variant, tagged with ``tags=[...]``. With :mod:`regnet.loggers.resume`:
a resumed run reuses the run id it started with (``logger_runs.json``) and W&B continues that run; a run trained
from scratch gets a new id. The resolved config goes into the run's config, the test confusion matrix in as an
image, and the run is finished when the regnet run ends (failed if it diverged or failed), so each run of a sweep
is its own W&B run. Offline, W&B does not resume: each attempt is a directory of its own with the same run id
(``wandb sync`` uploads them into that run). The steps the interrupted attempt logged after its checkpoint are
logged again by the resumed one, with the same values (resume is deterministic).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from regnet.loggers.resume import save_run_id, saved_run_id


class WandbLogger(LightningWandbLogger):
    """Lightning's WandbLogger (same arguments) writing into ``save_dir``, the run directory; ``tags``: the W&B
    run's tags (``tags=[...]``)."""

    def __init__(self, save_dir: str, project: str | None = None, name: str | None = None, **kwargs: Any):
        run_id = kwargs.pop("id", None) or saved_run_id(save_dir, "wandb") or new_run_id()
        if kwargs.get("tags") is not None:  # a ListConfig from the config: W&B wants plain strings
            kwargs["tags"] = [str(t) for t in kwargs["tags"]]
        super().__init__(save_dir=save_dir, project=project, name=name or Path(save_dir).name, id=run_id, **kwargs)
        self._run_dir = Path(save_dir)

    def _use_id(self, run_id: str) -> None:
        self._id = self._wandb_init["id"] = run_id
        save_run_id(self._run_dir, "wandb", run_id)

    @rank_zero_only
    def start_fresh(self) -> None:
        """Before training from scratch: a new W&B run."""
        if self._experiment is None:
            self._use_id(new_run_id())

    @rank_zero_only
    def resume(self, step: int | None) -> None:
        """Resuming: the W&B run this run directory started (its id is already in use, only recorded here)."""
        self._use_id(self._id)

    @rank_zero_only
    def end(self, status: str, files: list[Path]) -> None:
        """At the end of the run: the figures as images, then ``wandb.finish`` (exit code 1 unless completed)."""
        if self._experiment is None:
            return
        if files:
            self.log_image(key="test/figures", images=[str(p) for p in files], caption=[p.stem for p in files])
        self._experiment.finish(exit_code=0 if status == "completed" else 1)
        self._experiment = None


def new_run_id() -> str:
    """A new W&B run id (12 hex digits; W&B's own are 8 characters of [a-z0-9])."""
    return uuid.uuid4().hex[:12]
