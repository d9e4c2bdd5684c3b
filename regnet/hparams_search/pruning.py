"""Pruning a search's trials on the per-epoch validation metric (``hydra.sweeper.pruner``).

The sweeper (:mod:`regnet.hparams_search.sweeper`) runs each trial as an ordinary job on whatever launcher is
configured (in this process, a joblib worker, a SLURM job) and tells the job which Optuna trial it is and where the
study is through the job's environment (``REGNET_OPTUNA_TRIAL``: the trial's id; ``REGNET_OPTUNA_STORAGE``: the
storage URL, its SQLite path absolute; ``REGNET_OPTUNA_STUDY``: the study's name; set with ``hydra.job.env_set``,
so the run's directory and config do not depend on them). This callback, which ``conf/hparams_search/*.yaml``
adds to every run, then:

- after each validation epoch reports the objective (``trainer.callback_metrics[monitor]``) to the trial in the
  study's storage, at step = the epoch (``optuna.trial.Trial.report``);
- asks the study's pruner; if it prunes, it records ``pruned`` (a user attribute of the trial: the epoch and
  value) and stops training as early stopping would: the run tests and completes, and the sweeper marks the
  trial PRUNED.

In a stack (``hydra/launcher=stacked``, regnet/stacked/) the environment holds the members' trial ids,
comma-separated in member order, and member ``s`` reports its own ``m<s>/<monitor>`` to its trial. A pruned member
is recorded as above and stops reporting, but trains on with the others (a stack cannot drop a member); the stack
stops once every member is pruned.

Outside a search (no ``REGNET_OPTUNA_TRIAL``) or with ``pruner.name: none`` it does nothing.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L

from regnet.hparams_search import STORAGE_ENV, STUDY_ENV, TRIAL_ENV


class OptunaPruning(L.Callback):
    """Report ``monitor`` per validation epoch to the running trial(s); stop the run when the pruner prunes it (a
    stack: when it prunes every member). ``pruner``: the sweeper's ``hydra.sweeper.pruner``."""

    def __init__(self, monitor: str, pruner: Any = None):
        self.monitor, self.pruner = monitor, pruner
        self.trials: list[Any] = []  # optuna.trial.Trial per member (one for an ordinary run); None: no trial
        self.names: list[str] = []  # the metric each member reports
        self.pruned: set[int] = set()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        from regnet.hparams_search.sweeper import make_pruner

        ids = os.environ.get(TRIAL_ENV)
        storage = os.environ.get(STORAGE_ENV)
        pruner = make_pruner(self.pruner)
        if stage != "fit" or not ids or pruner is None or storage is None or not trainer.is_global_zero:
            return
        import optuna

        from regnet.hparams_search.storage import open_storage

        members = getattr(pl_module, "S", None)  # a stack of S members (regnet/stacked/module.py) logs m<s>/...
        ids = ids.split(",")
        if members is not None and len(ids) != members:
            raise ValueError(f"{TRIAL_ENV}={','.join(ids)} names {len(ids)} trials for a stack of {members} members")
        study = optuna.load_study(study_name=os.environ.get(STUDY_ENV), storage=open_storage(storage), pruner=pruner)
        self.trials = [optuna.trial.Trial(study, int(i)) if i else None for i in ids]
        self.names = [self.monitor] if members is None else [f"m{s}/{self.monitor}" for s in range(members)]
        self.pruned = set()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch
        for s, (trial, name) in enumerate(zip(self.trials, self.names, strict=True)):
            value = trainer.callback_metrics.get(name)
            if trial is None or s in self.pruned or value is None:
                continue
            trial.report(float(value), step=epoch)
            if trial.should_prune():
                trial.set_user_attr("pruned", f"epoch {epoch}: {self.monitor}={float(value):.4g}")
                self.pruned.add(s)
        stop = bool(self.trials) and len(self.pruned) == len(self.trials)
        if trainer.strategy.broadcast(stop):
            trainer.should_stop = True
