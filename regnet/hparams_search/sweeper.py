"""regnet's Optuna search: a Hydra sweeper over Optuna's ask/tell API (Optuna ≥ 4). ``conf/hparams_search/*.yaml``
select it with ``override /hydra/sweeper: regnet_optuna`` (``conf/hydra/sweeper/regnet_optuna.yaml``; the plugin
class Hydra loads is in ``hydra_plugins/regnet_hparams_search/``; not named ``optuna``, which would clash with
hydra-optuna-sweeper's schema where that is still installed).

- **Space.** ``hydra.sweeper.params`` and sweep overrides of the command line, in Hydra's syntax
  (:mod:`regnet.hparams_search.space`).
- **Trials on any launcher.** ``n_jobs`` trials are asked at a time and handed to the configured launcher as one
  batch (joblib, submitit/SLURM, the basic one); each trial is an ordinary run (:func:`regnet.train.train`): its
  own directory, resumable, skipped when complete.
- **Study in SQLite, resumed.** ``storage`` (``sqlite:///<sweep dir>/optuna.db``, made absolute and handed to every
  trial's job: :mod:`regnet.hparams_search.storage`) holds the study; the same command again resumes it:
  ``n_trials`` is the size of the whole search, and a trial an interruption left RUNNING is marked failed and its
  parameters asked again first (so it resumes in its run directory).
- **Samplers.** ``sampler.name``: ``tpe`` (default), ``random``, ``cmaes`` (needs ``cmaes``); ``sampler.seed``.
- **Pruning.** ``pruner.name``: ``none`` (default), ``median``, ``percentile``, ``successive_halving``,
  ``hyperband``, ``threshold``, ``patient``; the other keys are the pruner's arguments. Trials report the
  objective per validation epoch to the storage, from whichever process or SLURM job runs them; stacked
  members each to their own trial (:mod:`regnet.hparams_search.pruning`). Pruning needs a ``storage``.
- **Interrupted.** A signal that stops the jobs (``regnet.signals.Interrupted``) stops the search; its trials stay
  RUNNING in the study and run again when the same command resumes it.
- **Failed trials.** A trial that raises (bad input, divergence, a failed run), returns no objective or a
  non-finite one is told FAIL with its one-line reason (user attribute ``fail_reason``); the search goes on to
  ``n_trials``. The last line counts the failed trials; with no completed trial the search fails (exit 1).
- **Results.** ``optimization_results.yaml`` in the sweep directory: best parameters and value, the counts and
  each failed trial's reason.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobStatus
from omegaconf import OmegaConf
from optuna.trial import TrialState

from regnet.errors import one_line
from regnet.hparams_search import STORAGE_ENV, STUDY_ENV, TRIAL_ENV
from regnet.hparams_search.space import quoted, search_space, trial_overrides
from regnet.hparams_search.storage import absolute_url, open_storage
from regnet.lifecycle import TrainingFailed
from regnet.signals import JobInterrupted

log = logging.getLogger(__name__)

SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler"}
PRUNERS = {
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
    "threshold": "ThresholdPruner",
    "patient": "PatientPruner",
}
FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


class SearchFailed(TrainingFailed):
    """No trial of the search completed (the command exits 1)."""


def _kwargs(cfg: Any) -> tuple[str, dict[str, Any]]:
    cfg = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg or {})
    return str(cfg.pop("name", "none")).lower(), cfg


def make_sampler(cfg: Any) -> optuna.samplers.BaseSampler:
    """``{name: tpe|random|cmaes, seed: ..., <the sampler's arguments>}``."""
    name, kwargs = _kwargs(cfg)
    if name not in SAMPLERS:
        raise ValueError(f"hydra.sweeper.sampler.name={name} is unknown: use one of {', '.join(SAMPLERS)}")
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401  (optuna imports it only when the first trial is sampled)
        except ImportError:
            raise ValueError("hydra.sweeper.sampler.name=cmaes needs cmaes: pip install 'regnet[search]'") from None
    return getattr(optuna.samplers, SAMPLERS[name])(**kwargs)


def make_pruner(cfg: Any) -> optuna.pruners.BasePruner | None:
    """``{name: none|median|..., <the pruner's arguments>}``; None for ``none`` (no pruning)."""
    name, kwargs = _kwargs(cfg)
    if name in ("none", "nop", "null"):
        return None
    if name not in PRUNERS:
        raise ValueError(f"hydra.sweeper.pruner.name={name} is unknown: use none or one of {', '.join(PRUNERS)}")
    if name == "patient":
        kwargs.setdefault("wrapped_pruner", None)
    return getattr(optuna.pruners, PRUNERS[name])(**kwargs)


def check_objective(cfg) -> None:
    """A validation objective needs a validation split; say so before any trial trains."""
    objective = str(cfg.get("objective") or "")
    if objective.startswith("val/") and not cfg.data.get("val_fraction"):
        raise ValueError(
            f"objective={objective} needs a validation split: set data.val_fraction (e.g. 0.1); "
            "a search must never choose on the test set"
        )


def resume_study(study: optuna.Study) -> int:
    """Prepare a stored study to go on: its RUNNING trials (left by an interrupted search) are failed and their
    parameters enqueued to be asked again first. Returns how many trials it has finished before."""
    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        if trial.state == TrialState.RUNNING:
            study.tell(trial.number, state=TrialState.FAIL)
            study.enqueue_trial(trial.params)
            log.info(f"Trial {trial.number} was interrupted; its parameters {trial.params} run again")
    return sum(t.state in FINISHED for t in trials)


def trial_value(ret) -> tuple[float | None, str | None]:
    """(objective, None) for a job that returned a finite number, else (None, the one-line reason)."""
    if ret.status == JobStatus.FAILED:
        return None, one_line(ret._return_value)
    value = ret._return_value
    if value is None:
        return None, "no objective: the run is being trained by another process"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None, f"the objective {value!r} is not a number"
    if not math.isfinite(value):
        return None, f"the objective is {value}"
    return value, None


class OptunaSearch:
    """The search a sweeper runs (settings: the module docstring; ``config``: the job config with ``hydra``)."""

    def __init__(self, config, launcher, settings: dict[str, Any]):
        self.config, self.launcher, self.s = config, launcher, settings
        self.job_idx = 0

    def run(self, arguments: list[str]) -> None:
        s, cfg = self.s, self.config
        check_objective(cfg)
        space, fixed = search_space(s.get("params"), arguments)
        storage = absolute_url(s.get("storage"))  # what every trial's job opens, wherever it runs
        if make_pruner(s.get("pruner")) is not None and storage is None:  # a bad name: one line before anything runs
            raise ValueError(
                "hydra.sweeper.pruner needs a storage the trials' jobs report to: "
                "set hydra.sweeper.storage=sqlite:///<file> (conf/hparams_search/*.yaml do)"
            )
        sweep_dir = Path(cfg.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        study = optuna.create_study(
            study_name=s.get("study_name"),
            storage=None if storage is None else open_storage(storage),
            sampler=make_sampler(s.get("sampler")),
            direction=s.get("direction", "maximize"),
            load_if_exists=True,
        )
        to_go = max(0, int(s.get("n_trials", 20)) - resume_study(study))
        log.info(f"Study {study.study_name} ({storage}): {to_go} trials to go, space {space}")
        where = {STORAGE_ENV: storage, STUDY_ENV: study.study_name} if storage is not None else {}
        env = [f"++hydra.job.env_set.{key}={quoted(value)}" for key, value in where.items()]
        while to_go > 0:
            batch = [study.ask(fixed_distributions=space) for _ in range(min(to_go, int(s.get("n_jobs") or 1)))]
            overrides = [
                [*trial_overrides(t.params, fixed), f"++hydra.job.env_set.{TRIAL_ENV}={t._trial_id}", *env]
                for t in batch
            ]
            returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            for ret in returns:  # a signal stopped the jobs (regnet/signals.py): stop the search too; its RUNNING
                value = ret._return_value  # Interrupted, or a joblib worker's JobInterrupted
                if isinstance(value, JobInterrupted) or (
                    isinstance(value, BaseException) and not isinstance(value, Exception)
                ):
                    raise ret._return_value  # trials are asked again when the same command resumes it
            for trial, ret in zip(batch, returns, strict=True):
                self.tell(study, trial, ret)
            to_go -= len(batch)
        self.report(study, sweep_dir)

    def tell(self, study: optuna.Study, trial: optuna.Trial, ret) -> None:
        value, reason = trial_value(ret)
        if reason is not None:
            trial.set_user_attr("fail_reason", reason)
            study.tell(trial, state=TrialState.FAIL)
            log.warning(f"Trial {trial.number} {trial.params} failed: {reason}")
        elif pruned := study._storage.get_trial(trial._trial_id).user_attrs.get("pruned"):  # set by the run's job
            study.tell(trial, state=TrialState.PRUNED)  # (``trial.user_attrs`` is this process's cached copy)
            log.info(f"Trial {trial.number} {trial.params} pruned at {pruned}")
        else:
            study.tell(trial, value)
            log.info(f"Trial {trial.number} {trial.params}: {self.config.get('objective')} = {value}")

    def report(self, study: optuna.Study, sweep_dir: Path) -> None:
        """Write ``optimization_results.yaml``; print the last line (how many trials failed); no completed trial:
        :class:`SearchFailed`."""
        trials = study.get_trials(deepcopy=False, states=FINISHED)  # not those enqueued for later
        count = {state: sum(t.state == state for t in trials) for state in FINISHED}
        failed = {
            t.number: t.user_attrs.get("fail_reason", "interrupted") for t in trials if t.state == TrialState.FAIL
        }
        results: dict[str, Any] = {
            "name": "optuna",
            "study_name": study.study_name,
            "objective": self.config.get("objective"),
        }
        if count[TrialState.COMPLETE]:
            best = study.best_trial
            results |= {"best_params": best.params, "best_value": best.value, "best_trial": best.number}
        results |= {
            "n_trials": len(trials),
            "n_complete": count[TrialState.COMPLETE],
            "n_pruned": count[TrialState.PRUNED],
            "n_failed": count[TrialState.FAIL],
            "failed": failed,
        }
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
        summary = (
            f"search {study.study_name}: {len(trials)} trials, {count[TrialState.COMPLETE]} complete, "
            f"{count[TrialState.PRUNED]} pruned, {count[TrialState.FAIL]} failed"
        )
        if not count[TrialState.COMPLETE]:
            first = next(iter(failed), None)
            why = f" (trial {first}: {failed[first]})" if first is not None else ""
            raise SearchFailed(f"{summary}: no trial completed{why}")
        print(f"regnet: {summary}; best {results['objective']} = {best.value:.6g} with {best.params} "
              f"({sweep_dir / 'optimization_results.yaml'})", flush=True)  # fmt: skip
