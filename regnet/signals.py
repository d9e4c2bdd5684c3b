"""One contract for a signal: SIGTERM or SIGINT to a run (``kill``, Ctrl-C, ``scancel``, ``scontrol requeue``, a
node drain, a time limit) ends it with a checkpoint at the step it is on, ``"status": "interrupted"`` in its
``results.json``, and exit code 128 + signal (143, 130); the same command resumes it. On SLURM under submitit,
the preemption / time-limit signal (``--signal=USR2@90``, ``SUBMITIT_PREEMPT_SIGNAL``) does the same and then
requeues the job, which resumes from that step.

Who owns the signals: regnet. While a run trains, :class:`SignalGuard` is the only handler of these signals in its
process. Lightning's own SIGTERM handler (which raises at an epoch end or mid-validation, after the step) is
replaced at ``on_train_start``, its SLURM auto-requeue is switched off (:func:`trainer_plugins`), and submitit's
handlers (it ignores SIGTERM; on USR2 it requeues without a checkpoint of the run) are replaced too. After regnet
has written the checkpoint and the record, submitit's own requeue is called (:func:`hand_over`): it counts the
time-limit requeues against ``max_num_timeout`` and runs ``scontrol requeue``.

- A signal during training is deferred to the end of the optimizer step in progress (``on_train_batch_end``); on an
  epoch's last batch or during validation, to the epoch end (where the epoch's metrics are logged and reset, as the
  epoch-end checkpoint needs). Then :class:`CheckpointAtSignal` writes ``checkpoints/last.ckpt`` (atomically:
  regnet/callbacks/checkpoint.py) and raises :class:`Interrupted`.
- A second signal while that checkpoint is written is noted and ignored: the write finishes, then the run stops.
- Before training starts (setup, sanity check) or after it (test, the final record), :class:`Interrupted` is raised
  at once: nothing is lost that the checkpoint on disk does not hold.
- DDP: the ranks agree where to stop. At each of those points every rank takes part in one ``all_reduce`` (max) of
  the signal it got (0: none), so a signal to one rank (the launching process) or to all of them at slightly
  different steps (``scancel``: the process group) stops every rank at the same step, and all of them write the
  one checkpoint together (rank 0 writes the file). A rank that stopped alone would leave the others waiting in
  the next collective. One process: no collective, no host sync.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from regnet.callbacks.checkpoint import LastCheckpoint, _ends_epoch
from regnet.log import get_logger

log = get_logger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def requeue_signal() -> signal.Signals | None:
    """The signal submitit asks SLURM to send before a time limit (and a cluster may send at preemption):
    ``SUBMITIT_PREEMPT_SIGNAL`` or USR2; None outside a submitit SLURM job."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm":
        return None
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2").upper().removeprefix("SIG"))


class Interrupted(BaseException):
    """A run stopped by a signal (after its checkpoint was written, when it was training). Exit code 128 + signal.
    A BaseException, as KeyboardInterrupt is: no ``except Exception`` on the way up swallows it."""

    def __init__(self, signum: int, step: int | None = None, reason: str | None = None):
        self.signum, self.step = signum, step
        self.reason = reason or signal.Signals(signum).name
        at = "" if step is None else f" at step {step} (checkpoint written)"
        super().__init__(f"interrupted by {signal.Signals(signum).name}{at}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __reduce__(self):  # from a job's worker process (joblib) back to the sweep
        return type(self), (self.signum, self.step, self.reason)


class NotRequeued(RuntimeError):
    """On SLURM, submitit declined to requeue an interrupted run (time limits beyond ``max_num_timeout``): the job
    fails with this error (so the sweep sees it), the run's record stays ``interrupted``."""


class JobInterrupted(RuntimeError):
    """A sweep job in a joblib worker (``hydra/launcher=gpus``) stopped by a signal, with its checkpoint and its
    ``interrupted`` record: a failed job for Hydra, so the other jobs go on and the sweep ends with exit code
    128 + signal, naming the run, also when the signal reached only that worker."""

    def __init__(self, run_dir: str, signum: int, message: str):
        self.run_dir, self.signum, self.message = run_dir, signum, message
        super().__init__(f"sweep job {run_dir} was {message}; the other jobs ran; run the same command to resume it")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __reduce__(self):  # from the worker back to the sweep's process
        return type(self), (self.run_dir, self.signum, self.message)


class SignalGuard:
    """Handles SIGTERM, SIGINT (and the requeue signal on SLURM) while it is entered; restores the previous handlers
    on exit. ``deferred``: note the signal and let :class:`CheckpointAtSignal` stop the run at the next step's end;
    otherwise raise :class:`Interrupted` from the handler at once."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.reason: str | None = None
        self.deferred = False
        self.signals = (*STOP_SIGNALS, *([s] if (s := requeue_signal()) else []))
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> SignalGuard:
        self.previous = {s: signal.getsignal(s) for s in self.signals}
        self.install()
        return self

    def install(self) -> None:
        """(Re)take the signals: also after Lightning's ``fit`` registered its own handlers."""
        for s in self.signals:
            signal.signal(s, self._handle)

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:
            log.warning("%s received while stopping; it finishes writing first", signal.Signals(signum).name)
            return
        self.received, self.reason = signum, self._reason(signum)
        log.warning("%s received (%s)", signal.Signals(signum).name, self.reason)
        if not self.deferred:
            raise Interrupted(signum, reason=self.reason)
        log.warning("stopping at the end of this step, after its checkpoint")

    def _reason(self, signum: int) -> str:
        """SIGTERM / SIGINT, or for the requeue signal "time limit" or "preemption" (submitit's rule: a job that ran
        for 80 % of its time, or to 10 minutes before its end, has timed out)."""
        name = signal.Signals(signum).name
        submitit = getattr(self.previous.get(signum), "__self__", None)  # submitit's SignalHandler
        if signum == requeue_signal() and hasattr(submitit, "has_timed_out"):
            return f"time limit ({name})" if submitit.has_timed_out() else f"preemption ({name})"
        return name

    def hand_over(self, err: Interrupted) -> None:
        """After the record is written: on SLURM, the requeue signal goes on to submitit's handler, which requeues
        the job (up to ``max_num_timeout`` times for a time limit) and exits; anything else returns."""
        handler = self.previous.get(err.signum)
        if err.signum == requeue_signal() and hasattr(getattr(handler, "__self__", None), "has_timed_out"):
            log.warning("handing the job to submitit to requeue it")
            try:
                handler(err.signum, None)
            except Exception as refused:  # "timed-out too many times" (max_num_timeout): the job ends here
                raise NotRequeued(f"{err}; not requeued ({refused}); run the same command to resume") from refused


class CheckpointAtSignal(LastCheckpoint):
    """Stops a run that got a signal at the end of the optimizer step in progress (an epoch's last step: at its end),
    after writing ``<dirpath>/last.ckpt`` at that step. A ``Checkpoint``, so Lightning runs its hooks after the
    LightningModule's and the configured :class:`LastCheckpoint` instances' (added after them)."""

    def __init__(self, guard: SignalGuard, dirpath: str | os.PathLike):
        super().__init__(dirpath, every_n_epochs=0, every_n_train_steps=0)
        self.guard = guard

    @property
    def state_key(self) -> str:
        return self._generate_state_key(at="signal")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self.guard.install()  # Lightning's fit replaced our SIGTERM handler; take it back
        self.guard.deferred = True
        if self.signalled(trainer):  # during the sanity check: nothing trained since the checkpoint
            self.guard.deferred = False
            raise Interrupted(self.guard.received, reason=self.guard.reason)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if not _ends_epoch(trainer, batch_idx) and self.signalled(trainer):  # the same on every rank
            self.stop(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.signalled(trainer):
            self.stop(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.signalled(trainer):
            self.stop(trainer)
        self.guard.deferred = False  # test and the final record: a signal stops them at once

    def signalled(self, trainer: L.Trainer) -> bool:
        """Whether to stop here: this process got a signal; under DDP, any rank got one by the time every rank
        reached this point (one ``all_reduce`` of the signal number; a rank that got none takes the other's)."""
        if trainer.world_size == 1 or not torch.distributed.is_initialized():
            return self.guard.received is not None
        signum = torch.tensor([self.guard.received or 0], device=trainer.strategy.root_device)
        torch.distributed.all_reduce(signum, op=torch.distributed.ReduceOp.MAX)
        agreed = int(signum.item())
        if agreed and self.guard.received is None:  # only another rank got it: stop with it, ignore a late one
            self.guard.received, self.guard.reason = agreed, self.guard._reason(agreed)
            log.warning("%s received by another rank; stopping with it", signal.Signals(agreed).name)
        return agreed != 0

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.guard.deferred = False

    def stop(self, trainer: L.Trainer) -> None:
        start = time.perf_counter()
        self.save(trainer)
        log.warning("checkpoint at step %d written in %.2f s: %s", trainer.global_step, time.perf_counter() - start,
                    self.path)  # fmt: skip
        self.guard.deferred = False
        raise Interrupted(self.guard.received, trainer.global_step, self.guard.reason)


def trainer_plugins() -> dict[str, Any]:
    """Trainer keywords that keep Lightning's SLURM auto-requeue (a USR1 handler that saves its own ``hpc_ckpt`` and
    requeues) out of the way: regnet owns the signals."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    return {"plugins": [SLURMEnvironment(auto_requeue=False)]} if SLURMEnvironment.detect() else {}


def attempt(status: str, step: int, resumed_from: int | None, previous: dict[str, Any] | None, reason: str | None):
    """This attempt's entry in ``results.json``'s ``attempts``, after the earlier attempts that ``previous`` (the
    run's last record) lists: how it ended and why, the step it started from and ended at, and how many steps it
    trained again that an earlier attempt had trained (0 when that attempt checkpointed at a signal)."""
    earlier = list((previous or {}).get("attempts") or [])
    start = resumed_from or 0
    end_before = earlier[-1]["end_step"] if earlier else None
    entry = {
        "attempt": len(earlier) + 1,
        "ended": status,
        "reason": reason,
        "resumed_from_step": resumed_from,
        "end_step": step,
        "steps_redone": None if end_before is None else max(0, end_before - start),
        "slurm_job_id": slurm_job_id(),
    }
    return [*earlier, entry]


def slurm_job_id() -> str | None:
    """``<array job>_<task>`` for an array task, the job id otherwise; None outside SLURM."""
    if (array := os.environ.get("SLURM_ARRAY_JOB_ID")) is not None:
        return f"{array}_{os.environ.get('SLURM_ARRAY_TASK_ID')}"
    return os.environ.get("SLURM_JOB_ID")


class SweepSignals(SignalGuard):
    """A sweep's own process (``python -m regnet.train -m``): a signal goes on to the processes running its jobs
    (joblib's workers, submitit's local jobs), which stop as above, and the sweep ends with exit code 128 + signal
    once they have; with no job process (the basic launcher between two runs) it stops at once. A job trained in
    this process installs its own :class:`SignalGuard` over this one."""

    def _handle(self, signum: int, frame) -> None:
        children = descendants(os.getpid())
        if self.received is None:
            self.received, self.reason = signum, signal.Signals(signum).name
        for pid in children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:  # ended meanwhile
                pass
        if children:
            log.warning("%s: passed on to the sweep's %d job processes", self.reason, len(children))
            return
        raise Interrupted(signum, reason=self.reason)


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children first), read from /proc; none where there is no /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        kids = parents.get(queue.pop(0), [])
        found += kids
        queue += kids
    return found


def outlive_launcher(timeout_s: float = 60.0) -> None:
    """A DDP rank stopped by a signal that Lightning started as a child of the launching process (the same command
    again): wait (``timeout_s`` at most) for that process to end first, since Lightning there SIGKILLs it once a child
    exits non-zero (its record cut short, 137 for 143). Ranks started by ``srun`` or ``torchrun`` return at once."""
    parent = os.getppid()
    try:
        own, launcher = (Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:] for pid in ("self", parent))
    except OSError:
        return
    launcher = [a for a in launcher if a]
    if os.environ.get("LOCAL_RANK", "0") == "0" or not launcher or own[: len(launcher)] != launcher:
        return
    deadline = time.monotonic() + timeout_s
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(0.05)
