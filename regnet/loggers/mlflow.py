"""MLflow, one MLflow run per regnet run, in a file store under ``outputs/mlruns`` by default (experiments named
after the study's ``task_name``, runs after their directories); set ``logger.mlflow.tracking_uri`` or
``$MLFLOW_TRACKING_URI`` for a server.

    mlflow ui --backend-store-uri outputs/mlruns

Lightning's MLFlowLogger, with :mod:`regnet.loggers.resume`: a resumed run logs into the MLflow run it started
(its id is in ``logger_runs.json``) and does not log again the steps the interrupted attempt logged after its
checkpoint (resume is deterministic: they are the same values); a run trained from scratch opens a new one. The
resolved config is logged as params (on resume only those not logged yet: MLflow params cannot change), the test
confusion matrix as an artifact, and the run ends FINISHED, or FAILED if it diverged or failed. Each of the run's
``tags=[...]`` is an MLflow run tag with value ``"true"`` (``mlflow.search_runs(filter_string="tags.ablation =
'true'")``), set again when a run resumes, so the tags of its last attempt win.

MLflow 3 keeps the file store in maintenance mode and refuses it unless ``MLFLOW_ALLOW_FILE_STORE=true``; this
logger sets that (if unset) for ``file:`` stores, which need no database and no server.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.fabric.utilities.logger import _convert_params, _flatten_dict
from lightning.pytorch.loggers import MLFlowLogger as LightningMLFlowLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from regnet.loggers.resume import save_run_id, saved_run_id


class MLFlowLogger(LightningMLFlowLogger):
    """Lightning's MLFlowLogger for the run in ``run_dir``; ``save_dir`` is the file store (relative paths from
    the working directory) unless ``tracking_uri`` is given."""

    def __init__(
        self,
        run_dir: str,
        experiment_name: str,
        save_dir: str = "outputs/mlruns",
        tracking_uri: str | None = None,
        run_name: str | None = None,
        tags: Sequence[str] | Mapping[str, Any] | None = None,
        **kwargs: Any,
    ):
        if not tracking_uri:
            tracking_uri = Path(save_dir).resolve().as_uri()
        if tracking_uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self._run_dir = Path(run_dir)
        super().__init__(
            experiment_name=experiment_name,
            run_name=run_name or self._run_dir.name,
            tracking_uri=tracking_uri,
            save_dir=save_dir,
            run_id=saved_run_id(run_dir, "mlflow"),
            tags=run_tags(tags),
            **kwargs,
        )

    @rank_zero_only
    def start_fresh(self) -> None:
        """Before training from scratch: a new MLflow run."""
        self._run_id, self._initialized = None, False
        save_run_id(self._run_dir, "mlflow", self.run_id)

    @rank_zero_only
    def resume(self, step: int | None) -> None:
        """Resuming: the MLflow run this run directory started, RUNNING again (a new one if it is gone)."""
        from mlflow.exceptions import MlflowException

        if self._run_id is not None:
            try:
                self._mlflow_client.get_run(self._run_id)
            except MlflowException:
                self._run_id, self._initialized = None, False
        save_run_id(self._run_dir, "mlflow", self.run_id)
        self.experiment.update_run(self.run_id, status="RUNNING")
        for key, value in (self.tags or {}).items():  # an existing run keeps the tags it was created with
            self.experiment.set_tag(self.run_id, key, value)
        client = self.experiment
        self._logged_until = {  # MLflow cannot delete values: the steps trained again are not logged twice
            key: max(m.step for m in client.get_metric_history(self.run_id, key))
            for key in client.get_run(self.run_id).data.metrics
        }

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        logged = getattr(self, "_logged_until", {})
        new = {k: v for k, v in metrics.items() if k not in logged or (step or 0) > logged[k]}
        if new:
            super().log_metrics(new, step)

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        logged = self.experiment.get_run(self.run_id).data.params
        new = {k: v for k, v in _flatten_dict(_convert_params(params)).items() if k not in logged}
        if new:
            super().log_hyperparams(new)

    @rank_zero_only
    def end(self, status: str, files: list[Path]) -> None:
        """At the end of the run: the figures as artifacts, then the run's final status."""
        if not self._initialized:
            return
        for path in files:
            self.experiment.log_artifact(self.run_id, str(path))
        self.experiment.set_terminated(self.run_id, "FINISHED" if status == "completed" else "FAILED")


def run_tags(tags: Sequence[str] | Mapping[str, Any] | None) -> dict[str, str] | None:
    """MLflow run tags from regnet's ``tags=[a, b]``: ``{"a": "true", "b": "true"}`` (a mapping is kept as is)."""
    if not tags:
        return None
    if isinstance(tags, Mapping):
        return {str(k): str(v) for k, v in tags.items()}
    return {str(t): "true" for t in tags}
