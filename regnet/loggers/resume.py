"""One logger run per run, across attempts: a run trained from scratch starts new logger runs, a resumed run
continues the ones it started.

``<run dir>/logger_runs.json`` keeps the id of the run each logger opened (W&B run id, MLflow run id). The attempt
after an interruption logs into the same W&B run (``wandb.init(id=..., resume="allow")``) and the same MLflow run
instead of opening a second one. TensorBoard's run is its directory (``<run dir>/tensorboard``): a resumed attempt
appends to it and hides what the interrupted one logged after its checkpoint (``purge_step``). CSV keeps
``metrics.csv`` (:mod:`regnet.loggers.csv`).

The training path calls :func:`start_loggers` before ``trainer.fit`` and :func:`end_loggers` once ``results.json``
is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from regnet.files import write_atomic
from regnet.log import get_logger

log = get_logger(__name__)

LOGGER_RUNS = "logger_runs.json"
#: files of the run directory that every logger also gets at the end of a run (if they were written)
RUN_FILES = ("confusion_matrix.png", "predictions.png")


def saved_run_id(run_dir: str | os.PathLike, logger: str) -> str | None:
    """The id of the run ``logger`` (``wandb``, ``mlflow``) opened for this run directory, if any."""
    path = Path(run_dir) / LOGGER_RUNS
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get(logger)


def save_run_id(run_dir: str | os.PathLike, logger: str, run_id: str) -> None:
    """Record ``run_id`` as ``logger``'s run for this run directory (atomic rewrite of ``logger_runs.json``)."""
    path = Path(run_dir) / LOGGER_RUNS
    ids = json.loads(path.read_text()) if path.is_file() else {}
    if ids.get(logger) != run_id:
        write_atomic(path, json.dumps({**ids, logger: run_id}, indent=2) + "\n")


def hyperparameters(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config without Hydra's own settings: what each logger records as the run's hyper-parameters
    (``results.json`` holds the same under ``config``)."""
    return {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k != "hydra"}


def start_loggers(loggers: Sequence[Logger], cfg: DictConfig, *, resumed: bool, step: int | None = None) -> None:
    """Before ``trainer.fit``: from scratch, every logger starts a new run (``start_fresh``); resumed from a
    checkpoint at global ``step``, each continues its own (``resume``). Then every logger but CSV records the
    resolved config as hyper-parameters (CSV runs have it in ``results.json``)."""
    from regnet.loggers.csv import CSVLogger

    for logger in loggers:
        if resumed and hasattr(logger, "resume"):
            logger.resume(step)
        elif not resumed and hasattr(logger, "start_fresh"):
            logger.start_fresh()
    params = hyperparameters(cfg)
    for logger in loggers:
        if not isinstance(logger, CSVLogger):
            logger.log_hyperparams(params)


def end_loggers(loggers: Sequence[Logger], status: str, run_dir: str | os.PathLike) -> None:
    """Once the run has ended (``status``: completed, diverged, failed): each logger gets the run's figures
    (:data:`RUN_FILES`) and closes its run with that status (W&B's ``finish``, MLflow's ``set_terminated``). A logger
    that fails here is reported on stderr; the run stays as ``results.json`` says."""
    files = [Path(run_dir) / name for name in RUN_FILES if (Path(run_dir) / name).is_file()]
    for logger in loggers:
        if hasattr(logger, "end"):
            try:
                logger.end(status, files)
            except Exception as err:  # the run itself is recorded already: say so, do not fail it
                log.warning(f"{type(logger).__name__} could not close its run: {type(err).__name__}: {err}")
