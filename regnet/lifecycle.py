"""A run's lifecycle in its directory: claim it, skip it if done, resume it, record how it ended.

    with RunLifecycle(cfg, run_dir) as run:
        if run.skipped is not None:       # completed earlier, or being trained by another process
            return run.skipped
        ...build, trainer...
        run.started(trainer, module, datamodule, resumed_from)
        trainer.fit(...)                   # an exception from here on is recorded, then re-raised
        return run.completed(metrics)      # results.json, status "completed"

- **One process per run.** The run holds a flock on ``<run dir>/.regnet-run.lock`` while it trains; a second
  process (the same command started twice, a requeued SLURM job) skips it. The kernel drops the lock when its
  holder dies, SIGKILL included, so a killed run never blocks its own resume.
- **Clean up.** Temporary files of an atomic write that a kill cut short are removed once the lock is held.
- **Skip completed.** A ``results.json`` that says ``completed`` is returned as is (``force=true`` retrains).
  An unreadable one is set aside as ``results.json.corrupt`` and the run trains again.
- **Resume.** ``checkpoints/last.ckpt`` (unless ``force=true`` or ``ckpt_path=``); an unreadable one (a kill
  during its write) is set aside as ``last.ckpt.corrupt`` and the run starts from scratch.
- **Record.** ``results.json`` (regnet/results.py) says ``completed``, ``diverged``, ``failed`` (with the
  error; the traceback in ``error.txt``) or ``interrupted`` (a signal: regnet/signals.py), written atomically by
  rank 0; ``attempts`` lists every attempt that wrote one (how it ended, why, from which step, steps redone).
- **Outside Hydra** (tests, notebooks): :func:`bind_run_dir` points ``${hydra:runtime.output_dir}`` at the run.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from regnet.checkpoints import UntrustedCheckpoint, load_checkpoint
from regnet.errors import Diverged, headline
from regnet.files import write_atomic
from regnet.locks import exclusive
from regnet.log import get_logger
from regnet.loggers.resume import end_loggers
from regnet.results import LAST_CHECKPOINT, RESULTS, invalid_results, run_results, write_results
from regnet.signals import Interrupted, attempt

log = get_logger(__name__)

RUN_LOCK = ".regnet-run.lock"
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


def bind_run_dir(cfg: DictConfig, run_dir: Path) -> None:
    """Outside a Hydra job (tests, notebooks composing with ``return_hydra_config=True``), point
    ``${hydra:runtime.output_dir}`` at ``run_dir`` so the logger and checkpoints land there."""
    if "hydra" in cfg:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(run_dir)
        HydraConfig.instance().set_config(cfg)


class TrainingFailed(RuntimeError):
    """A run failed after training started; its results.json says ``failed``."""


def read_or_set_aside(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``results.json``, or None if there is none or it is unreadable (then it is renamed
    ``results.json.corrupt``, so it neither blocks the run nor is lost)."""
    path = run_dir / RESULTS
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
        if not isinstance(results, dict):
            raise ValueError("not a JSON object")
        return results
    except (OSError, ValueError) as err:
        aside = path.with_name(RESULTS + ".corrupt")
        path.replace(aside)
        log.warning("%s is unreadable (%s); set aside as %s, training the run again", path, err, aside.name)
        return None


def already_completed(record: dict[str, Any] | None, cfg: DictConfig) -> bool:
    """Whether a run whose ``results.json`` is ``record`` is skipped: it says ``completed`` and ``force`` is off. The
    run's own check, and the SLURM launcher's before it submits (regnet/slurm.py)."""
    return bool(record) and record.get("status") == "completed" and not cfg.get("force")


def checkpoint_step(path: Path, trust: bool = False) -> int | None:
    """The checkpoint's global step, or None (and the file set aside as ``*.corrupt``) if a kill interrupted
    its write. Loaded weights-only unless ``trust``: a checkpoint that needs more raises UntrustedCheckpoint
    (regnet/checkpoints.py) and stays where it is."""
    try:
        return int(load_checkpoint(path, trust=trust).get("global_step", 0))
    except UntrustedCheckpoint:
        raise
    except Exception as err:  # truncated zip, EOF, unpickling errors
        path.replace(path.with_suffix(".ckpt.corrupt"))
        log.warning("%s is unreadable (%s); starting this run from scratch", path, type(err).__name__)
        return None


class RunLifecycle:
    """The lock, skip, resume and record policy of one run directory (module docstring)."""

    def __init__(self, cfg: DictConfig, run_dir: str | Path):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.skipped: dict[str, Any] | None = None
        self._trainer: L.Trainer | None = None
        self._previous: dict[str, Any] | None = None  # the record of an earlier attempt (its attempts)
        self._reason: str | None = None

    # --- claim and skip -----------------------------------------------------------------------------------
    def __enter__(self) -> RunLifecycle:
        distributed_rank = any(os.environ.get(v, "0") != "0" for v in RANK_VARIABLES)  # rank 0 holds the lock
        self._lock = exclusive(self.run_dir / RUN_LOCK, wait=False)
        held, owner = (True, "") if distributed_rank else self._lock.__enter__()
        self._locked = not distributed_rank
        if not held:
            pid = f" (pid {owner})" if owner else ""
            log.warning(
                "%s is being trained by another process%s; skipping it. Run the command again once that "
                "process has ended (it resumes or skips the run).",
                self.run_dir,
                pid,
            )
            self.skipped = {"status": "running elsewhere", "run_dir": str(self.run_dir)}
            return self
        for stray in self.run_dir.glob(".*.tmp"):  # an atomic write (results.json, error.txt) cut short by a kill
            stray.unlink(missing_ok=True)
        done = read_or_set_aside(self.run_dir)
        self._previous = None if self.cfg.force else done
        if already_completed(done, self.cfg):
            log.info("%s is already completed (results.json); skipping. Use force=true to retrain.", self.run_dir)
            self.skipped = done
        return self

    def resume_from(self) -> tuple[str | None, int | None]:
        """(checkpoint to resume from, its step): ``ckpt_path=`` if given, else ``last.ckpt`` unless force."""
        if self.cfg.ckpt_path is not None:
            return str(self.cfg.ckpt_path), None
        last = self.run_dir / LAST_CHECKPOINT
        trust = bool(self.cfg.get("trust_checkpoint"))
        if last.is_file() and not self.cfg.force and (step := checkpoint_step(last, trust)) is not None:
            log.info("resuming from %s (step %d)", last, step)
            return str(last), step
        return None, None

    # --- record -------------------------------------------------------------------------------------------
    def started(self, trainer: L.Trainer, module: L.LightningModule, datamodule, resumed_from: int | None) -> None:
        """Training starts now: from here on, how the run ends is recorded in results.json."""
        self._trainer, self._module, self._datamodule = trainer, module, datamodule
        self._resumed_from, self._start = resumed_from, time.perf_counter()

    def completed(self, metrics: dict[str, float]) -> dict[str, Any]:
        results = self._record("completed", metrics)
        self._trainer = None  # nothing left to record in __exit__
        return results

    def diverged(self, metrics: dict[str, float], step: int, error: str) -> dict[str, Any]:
        """Training ended with a non-finite loss at ``step`` (found after the fact, as a stack member's is)."""
        results = self._record("diverged", metrics, error=error, diverged_step=step)
        self._trainer = None
        return results

    def __exit__(self, exc_type, err, tb) -> None:
        try:
            if self._trainer is not None and err is not None:
                self.failed(err)
        finally:
            if self._locked:
                self._lock.__exit__(None, None, None)

    def failed(self, err: BaseException) -> None:
        """Record a run that stopped during training, then let the caller raise: ``Diverged`` as it is, other
        exceptions as :class:`TrainingFailed` (one line naming the run directory); KeyboardInterrupt unchanged."""
        message = headline(err)
        try:
            if isinstance(err, Interrupted):  # a checkpoint at the step is on disk; the same command resumes
                self._reason = err.reason
                self._record("interrupted", {}, error=str(err))
                return
            if isinstance(err, Diverged):
                self._record("diverged", {}, error=str(err), diverged_step=err.step)
                return
            self._record("failed", {}, error=message, trace=traceback.format_exc())
            where = f"see {self.run_dir / 'error.txt'}"
        except OSError as write_err:  # disk full, read-only: the original error still ends the run, with exit 1
            where = f"and its record could not be written ({write_err})"
        if isinstance(err, Exception):
            raise TrainingFailed(f"run {self.run_dir} failed during training ({message}); {where}") from err

    def _record(
        self,
        status: str,
        metrics: dict[str, float],
        *,
        error: str | None = None,
        trace: str | None = None,
        diverged_step: int | None = None,
    ) -> dict[str, Any]:
        """Assemble (regnet/results.py) and atomically write ``results.json`` (rank 0 only); returns it."""
        trainer = self._trainer
        results = run_results(
            status,
            self.cfg,
            trainer,
            self._module,
            self._datamodule,
            metrics or self.logged_metrics(),
            wall_time_s=time.perf_counter() - self._start,
            resumed_from_step=self._resumed_from,
            error=error,
            diverged_step=diverged_step,
            attempts=attempt(status, trainer.global_step, self._resumed_from, self._previous, self._reason),
        )
        results |= self.extra_results()
        if trainer.is_global_zero:
            if trace:
                write_atomic(self.run_dir / "error.txt", trace)
            write_results(self.run_dir, results)
            end_loggers(trainer.loggers, status, self.run_dir)  # W&B, MLflow: the logger run ends with this status
        return results

    # --- what a subclass may add (a stacked member: its own metrics, the runs it trained with) ---------------
    def logged_metrics(self) -> dict[str, float]:
        """The metrics recorded when training ended without any (a failure): the trainer's last logged values."""
        return {k: float(v) for k, v in self._trainer.callback_metrics.items()}

    def extra_results(self) -> dict[str, Any]:
        """Keys added to ``results.json``."""
        return {}


def record_invalid(run_dir: str | Path, cfg: DictConfig, message: str) -> None:
    """A sweep job stopped by bad input before training: its directory says why (``status: invalid``), so
    analysis lists it; a lone run writes nothing (its one-line error is the whole answer)."""
    write_results(run_dir, invalid_results(cfg, message))
