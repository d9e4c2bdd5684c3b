"""hydra-optuna-sweeper's Optuna sweeper, made to resume: ``conf/hparams_search/*.yaml`` select it with
``hydra.sweeper._target_`` (the plugin class, ``hydra_plugins/regnet_hparams_search/``, calls :func:`prepare`).

The plugin asks ``n_trials`` new trials every time it runs, even when its SQLite study already holds the trials of
an earlier, interrupted invocation. This sweeper makes running the same command again resume the search:

- ``n_trials`` is the size of the whole search: trials the study has finished (complete or failed) count;
- a trial an interruption left RUNNING is marked failed and its parameters are asked again first, so it trains in
  the same run directory (the same overrides) and resumes from that run's checkpoint;
- a search whose objective is a validation metric stops before any training if there is no validation split.

Each trial runs as an ordinary run (:func:`regnet.train.train`): a completed trial's run directory is skipped and
answers from its ``results.json``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

log = logging.getLogger(__name__)


def prepare(sweeper) -> None:
    """Before hydra-optuna-sweeper's ``sweep`` (its ``OptunaSweeperImpl``): check the objective, create the sweep
    directory (where SQLite creates the study), resume the stored study and count its finished trials against
    ``n_trials``."""
    check_objective(sweeper.config)
    Path(sweeper.config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)
    if sweeper.storage is not None:
        sweeper.n_trials = max(0, sweeper.n_trials - resume_study(sweeper.storage, sweeper.study_name))
        if sweeper.n_trials == 0:
            log.info(f"Study {sweeper.study_name} has all its trials; writing its best parameters")


def resume_study(storage: str, study_name: str) -> int:
    """Prepare a stored study to go on: its RUNNING trials (left by an interrupted search) are failed and their
    parameters enqueued to be asked again first. Returns how many trials it has finished (complete or failed
    before the interruption); 0 for a study not created yet."""
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # optuna 2.x: no such study in this storage yet
        return 0
    trials = study.get_trials(deepcopy=False)
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED) for t in trials)
    for trial in trials:
        if trial.state == TrialState.RUNNING:
            study.tell(trial.number, state=TrialState.FAIL)
            with warnings.catch_warnings():  # enqueue_trial is "experimental" in optuna 2.x, and what we need
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.enqueue_trial(trial.params)
            log.info(f"Trial {trial.number} was interrupted; its parameters {trial.params} run again")
    return finished


def check_objective(cfg) -> None:
    """A validation objective needs a validation split; say so before any trial trains."""
    objective = str(cfg.get("objective") or "")
    if objective.startswith("val/") and not cfg.data.get("val_fraction"):
        raise ValueError(
            f"objective={objective} needs a validation split: set data.val_fraction (e.g. 0.1); "
            "a search must never choose on the test set"
        )
