"""Train one run: ``python -m regnet.train [group=choice ...] [key=value ...]``; sweeps with ``-m``.

    python -m regnet.train                                   # LeNet on MNIST, no regularization
    python -m regnet.train model=resnet18 reg=svb -m seed=0,1,2,3,4
    python -m regnet.train experiment=hoffman2019_mnist -m variant=no_reg,l2,jacobi seed=0,1

The training path, top to bottom: compose (Hydra) → build (the Trainer: regnet/trainer.py, shared with the stacked
path) → fit → test → record. A run's directory depends only on the overrides that can change its result, so the
same command again skips completed runs and resumes interrupted ones (regnet/lifecycle.py); the command line's
error handling is in regnet/cli.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from regnet.build import build
from regnet.callbacks.checkpoint import fit_metrics
from regnet.callbacks.divergence import DivergenceCheck
from regnet.cli import command_line, job_scope
from regnet.errors import CONF
from regnet.hparams_search import objective_value
from regnet.lifecycle import RunLifecycle, bind_run_dir
from regnet.loggers.resume import start_loggers
from regnet.preflight import check_seed, preflight
from regnet.signals import CheckpointAtSignal, Interrupted, SignalGuard
from regnet.trainer import make_trainer, weights_only


def train(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train, test and write ``results.json`` into ``run_dir``; returns the results. Bad input raises before
    anything is written. Once training has started, a diverged run (NaN/Inf loss) or any other exception is
    recorded in ``results.json`` (``diverged`` / ``failed``) and re-raised; SIGTERM or SIGINT: a checkpoint at
    the current step, ``interrupted``, and :class:`~regnet.signals.Interrupted` raised."""
    run_dir = Path(run_dir)
    bind_run_dir(cfg, run_dir)
    guard = SignalGuard()
    try:
        with guard:
            return _train(cfg, run_dir, guard)
    except Interrupted as err:
        guard.hand_over(err)  # on SLURM, submitit requeues the job (regnet/signals.py)
        raise


def _train(cfg: DictConfig, run_dir: Path, guard: SignalGuard) -> dict[str, Any]:
    with RunLifecycle(cfg, run_dir) as run:
        if run.skipped is not None:
            return run.skipped
        check_seed(cfg.seed)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        module, datamodule, reg_callbacks = build(cfg)
        preflight(cfg, module, datamodule)
        at_signal = CheckpointAtSignal(guard, run_dir / "checkpoints")
        callbacks = [*reg_callbacks, at_signal, DivergenceCheck()]  # a non-finite loss stops the run
        trainer = make_trainer(cfg, run_dir, datamodule, callbacks)  # regnet/trainer.py
        ckpt_path, resumed_from = run.resume_from()
        start_loggers(trainer.loggers, cfg, resumed=ckpt_path is not None, step=resumed_from)  # new runs or resumed

        run.started(trainer, module, datamodule, resumed_from)
        only = weights_only(cfg)  # Lightning loads ckpt_path weights-only too
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=only)
        metrics = fit_metrics(trainer)  # the last epoch's train/val, also when fit resumed at its end
        for d in trainer.test(module, datamodule=datamodule, verbose=False, weights_only=only):
            metrics.update({k: float(v) for k, v in d.items()})
        return run.completed(metrics)


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """One Hydra job: place it (GPU, CPU threads), train it, hand its objective (test/acc by default) to the sweeper."""
    with job_scope(cfg, HydraConfig.get()) as run_dir:
        results = train(cfg, run_dir)
    return objective_value(cfg, results)  # metrics[cfg.objective], test/acc by default


if __name__ == "__main__":
    with command_line():
        main()
