"""Pruning a search's trials on the per-epoch validation metric (``hydra.sweeper.pruner``).

The sweeper (:mod:`regnet.hparams_search.sweeper`) runs each trial as an ordinary job on whatever launcher is
configured, and tells the job which Optuna trial it is through the environment (``REGNET_OPTUNA_TRIAL``, set with
``hydra.job.env_set``, so the run's directory and config do not depend on it). This callback, which
``conf/hparams_search/*.yaml`` adds to every run, then:

- after each validation epoch reports the objective (``trainer.callback_metrics[monitor]``) to the trial in the
  study's storage, at step = the epoch (``optuna.trial.Trial.report``);
- asks the study's pruner; if it prunes, it records ``pruned`` (a user attribute of the trial: the epoch and
  value) and stops training as early stopping would: the run tests and completes, and the sweeper marks the
  trial PRUNED.

Outside a search (no ``REGNET_OPTUNA_TRIAL``) or with ``pruner.name: none`` it does nothing.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L

TRIAL_ENV = "REGNET_OPTUNA_TRIAL"  # the trial's id in the study's storage


class OptunaPruning(L.Callback):
    """Report ``monitor`` per validation epoch to the running trial; stop the run when the pruner prunes it."""

    def __init__(self, monitor: str, storage: str | None, study_name: str | None, pruner: Any = None):
        self.monitor, self.storage, self.study_name, self.pruner = monitor, storage, study_name, pruner
        self.trial = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        from regnet.hparams_search.sweeper import make_pruner

        trial_id = os.environ.get(TRIAL_ENV)
        pruner = make_pruner(self.pruner)
        if stage != "fit" or not trial_id or pruner is None or self.storage is None or not trainer.is_global_zero:
            return
        import optuna

        study = optuna.load_study(study_name=self.study_name, storage=self.storage, pruner=pruner)
        self.trial = optuna.trial.Trial(study, int(trial_id))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        value = trainer.callback_metrics.get(self.monitor)
        if self.trial is not None and value is not None:
            epoch = trainer.current_epoch
            self.trial.report(float(value), step=epoch)
            prune = self.trial.should_prune()
            if prune:
                self.trial.set_user_attr("pruned", f"epoch {epoch}: {self.monitor}={float(value):.4g}")
        if trainer.strategy.broadcast(prune):
            trainer.should_stop = True
