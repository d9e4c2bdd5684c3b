"""The ``python -m regnet.train`` command line: where a job runs, and how a failure ends the command.

- Bad input (found before training starts) ends a lone run with one line on stderr and exit code 2; nothing
  is written.
- A run that failed or diverged during training is recorded in its ``results.json`` and ends with one line
  and exit code 1.
- In a sweep (``-m``) neither stops the other jobs: a job with bad input records ``status: invalid`` in its
  run directory and says why in one line; the sweep exits non-zero once every job has run.
- A signal (SIGTERM, SIGINT) stops the run at a checkpoint of its current step, records it ``interrupted``
  and ends the command (a sweep too: the jobs not yet run are not started) with exit code 128 + signal; the
  same command resumes (regnet/signals.py). A signal that reached only one joblib worker (``hydra/launcher=gpus``)
  stops only that job; the others run to the end, then the sweep exits 128 + signal naming the interrupted run.
- ``HYDRA_FULL_ERROR=1`` shows the full traceback instead.

regnet/train.py wraps its Hydra ``main`` in :func:`command_line` and each job in :func:`job_scope`; this module
never calls back into training (imports point one way: train → cli).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from regnet.errors import Diverged, one_line
from regnet.jobs import pin_to_gpu, share_cpu_cores
from regnet.lifecycle import TrainingFailed, record_invalid
from regnet.signals import Interrupted, JobInterrupted, NotRequeued, SweepSignals, outlive_launcher

FAILED_DURING_TRAINING = (Diverged, TrainingFailed, NotRequeued)


class InvalidJob(ValueError):
    """A sweep job stopped by bad input; its run directory records ``status: invalid``."""


@contextmanager
def job_scope(cfg: DictConfig, hydra_cfg) -> Iterator[Path]:
    """One Hydra job, pinned to its GPU and given its share of the CPU cores; yields its run directory. Bad
    input found before training (or inside the ``with``) and a run that failed during training end the job
    as the module docstring says: a lone run exits (2, 1), a sweep job is recorded and raised for Hydra."""
    run_dir = Path(hydra_cfg.runtime.output_dir)
    pin_to_gpu(cfg, hydra_cfg)
    share_cpu_cores(cfg, hydra_cfg)
    sweep = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        check_override_types(hydra_cfg)
        yield run_dir
    except Interrupted as err:
        if os.environ.get("LOCAL_RANK", "0") != "0":  # a DDP rank; rank 0 says it and records the run
            outlive_launcher()
            raise
        print(f"regnet: run {run_dir} {err}; run the same command to resume it", file=sys.stderr)
        if type(multiprocessing.current_process()).__name__ == "LokyProcess":
            # a joblib worker (hydra/launcher=gpus): joblib answers a job's BaseException by killing every other
            # worker, which may still be writing its own checkpoint; an Exception is Hydra's failed job instead,
            # raised in the sweep's process once every job has run (there: exit code 128 + signal)
            raise JobInterrupted(str(run_dir), err.signum, str(err)) from None
        raise  # the sweep stops too, with exit code 128 + signal
    except FAILED_DURING_TRAINING as err:
        if not sweep:  # exit here: Hydra would add a line of its own
            _exit(1, str(err))
        print(f"regnet: job {hydra_cfg.job.num}: {err}", file=sys.stderr)
        raise  # the other jobs go on; the sweep exits non-zero at the end
    except Exception as err:  # bad input, found before training started
        if os.environ.get("REGNET_FULL_ERROR") == "1":
            raise
        if not sweep:
            _exit(2, one_line(err))
        message = one_line(err)
        record_invalid(run_dir, cfg, message)
        print(f"regnet: job {hydra_cfg.job.num} ({run_dir}): {message}", file=sys.stderr)
        raise InvalidJob(f"a sweep job had bad input: {message} (the other jobs ran; see each run's results.json)")


def check_override_types(hydra_cfg) -> None:
    """``key=abc`` where the config holds a number is one line naming the key, before anything runs (torch or
    Lightning would say "'<' not supported between instances of 'str' and 'int'", or fail mid-training). The
    defaults are read by composing the command without its string-valued overrides (only when it has any)."""
    from hydra import compose
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task))
    groups = set(hydra_cfg.runtime.choices)
    suspects = [o for o in parsed if o.key_or_group not in groups and not o.is_delete() and isinstance(o.value(), str)]
    if not suspects:
        return
    try:
        defaults = compose(
            config_name=hydra_cfg.job.config_name, overrides=[o.input_line for o in parsed if o not in suspects]
        )
    except Exception:  # no Hydra app here (some launchers' workers), or a composition the run itself reports
        return
    for o in suspects:
        default = OmegaConf.select(defaults, o.key_or_group, default=None)
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            kind = "an integer" if isinstance(default, int) else "a number"
            raise ValueError(f"{o.key_or_group}={o.value()!r} is invalid: it must be {kind} (default {default!r})")


def _exit(code: int, message: str) -> None:
    print(f"regnet: {message}", file=sys.stderr)
    sys.exit(code)


def _flags_first(argv: list[str]) -> list[str]:
    """Let ``-m``/``--multirun`` stand anywhere on the command line, as users write it."""
    flags = [a for a in argv if a in ("-m", "--multirun")]
    return flags + [a for a in argv if a not in ("-m", "--multirun")]


@contextmanager
def command_line() -> Iterator[None]:
    """Around the Hydra ``main`` of ``python -m regnet.train``: errors end in one line on stderr and exit code 2
    (1 for a run that failed or diverged during training); HYDRA_FULL_ERROR=1 shows the full traceback."""
    sys.argv[1:] = _flags_first(sys.argv[1:])
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        os.environ["REGNET_FULL_ERROR"] = "1"
        try:
            yield
        except Interrupted as err:
            sys.exit(err.exit_code)
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let exceptions reach us instead of Hydra's multi-line report
    sweep_signals = SweepSignals()
    try:
        try:
            with sweep_signals:  # a sweep's jobs in other processes stop on a signal too (regnet/signals.py)
                yield
        except Exception:  # a launcher's report of its stopped jobs (a worker or a job process that ended)
            if sweep_signals.received is None:
                raise
        if sweep_signals.received is not None:  # they stopped, and the launcher returned
            _exit(128 + sweep_signals.received, f"sweep interrupted by {sweep_signals.reason}")
    except Interrupted as err:
        sys.exit(err.exit_code)  # job_scope said which run and where it stopped
    except JobInterrupted as err:  # a signal to one joblib worker, not to the sweep
        _exit(err.exit_code, str(err))
    except FAILED_DURING_TRAINING as err:
        _exit(1, str(err))
    except Exception as err:
        _exit(2, one_line(err))
