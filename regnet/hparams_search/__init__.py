"""Hyper-parameter searches over a study (``conf/hparams_search/``): Optuna, through regnet's own sweeper.

    python -m regnet.train -m hparams_search=jacobian_lam        # λ of the Jacobian penalty, max val/acc
    python -m regnet.train -m hparams_search=jacobian_lam_pgd    # the same λ, max val/pgd_acc

Each trial is an ordinary run (its own directory, resumable, skipped when complete); the value Optuna maximises
is what ``regnet.train.main`` returns, the run's ``metrics[objective]`` (:func:`objective_value`; the top-level
``objective`` key, ``test/acc`` by default, a validation metric in every search). The sweeper
(:mod:`regnet.hparams_search.sweeper`) keeps the study in SQLite under the sweep directory, so running the command
again resumes the search, and writes the best parameters to ``optimization_results.yaml`` (docs/search.md).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

# How the sweeper tells a trial's job which trial it is (regnet/hparams_search/pruning.py): through the job's
# environment (``hydra.job.env_set``), so that the run's directory and config do not depend on it; the job may run
# in another process, on another node (SLURM) or in a stack (the members' ids, comma-separated).
TRIAL_ENV = "REGNET_OPTUNA_TRIAL"  # the trial's id in the study's storage
STORAGE_ENV = "REGNET_OPTUNA_STORAGE"  # the study's storage URL, its SQLite file an absolute path
STUDY_ENV = "REGNET_OPTUNA_STUDY"  # the study's name in that storage


def objective_value(cfg: DictConfig, results: dict[str, Any]) -> float | None:
    """The run's ``metrics[cfg.objective]`` (what a sweeper optimises); None for a run this process did not
    train or read (another process holds it). A completed run without that metric is an error: the search
    would otherwise record a trial with no value."""
    name = cfg.get("objective") or "test/acc"
    metrics = results.get("metrics")
    if metrics is None:
        return None
    if name not in metrics:
        if results.get("status") != "completed":
            return None
        hint = ""
        if name.startswith("val/"):
            hint = (
                " (no validation epoch ended: did training stop before the first one, e.g. trainer.max_steps?)"
                if cfg.data.get("val_fraction")
                else " (validation metrics need data.val_fraction > 0)"
            )
        raise ValueError(f"objective={name} is not among the run's metrics{hint}: it has {', '.join(sorted(metrics))}")
    return float(metrics[name])


def search_env(cfg: DictConfig) -> dict[str, str]:
    """The search's variables among a job's ``hydra.job.env_set`` (its trial, the study), as strings."""
    env = cfg.hydra.job.get("env_set") or {}
    return {k: str(v) for k, v in env.items() if k in (TRIAL_ENV, STORAGE_ENV, STUDY_ENV)}
