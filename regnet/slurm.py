"""``hydra/launcher=slurm`` and ``slurm_cpu``: hydra-submitit-launcher's SLURM launcher (one array task per sweep
job) with what a rerun and a cluster without accounting need. ``hydra_plugins/regnet_slurm_launcher`` names the
class for Hydra, which loads launchers only from the ``hydra_plugins`` package.

- **A rerun submits only the unfinished runs.** Before submitting, each job's run directory is computed as Hydra
  will compute it in the job (its sweep config: ``hydra.sweep.dir``/``hydra.sweep.subdir``). A run whose
  ``results.json`` says ``completed`` (:func:`regnet.lifecycle.already_completed`; ``force=true`` retrains) is left
  out of the array: its job runs in this process instead, where the run finds its record and returns it at once.
  One line says ``N of M runs already completed; submitting K``; with K = 0 nothing is submitted.
- **A job that ends without a result ends its sweep job, not the sweep's wait.** submitit learns that a job ended
  from ``sacct``; where the cluster keeps no accounting (``sacct``: "Slurm accounting storage is disabled") it
  never does, and a sweep whose job was cancelled (``scancel``: SIGTERM, the run checkpoints at its step, records
  ``interrupted`` and hands back no result) waited forever. This launcher asks ``squeue`` instead, which lists a
  job with its state while it is queued, running or requeued and for ``MinJobAge`` (300 s by default) after it
  ended. A job that has ended (or is gone) without a result fails its sweep job with :class:`JobEnded`, which names
  the run, the step it is checkpointed at and the job's state: the sweep waits for the other jobs, then exits 1;
  the same command resumes the run. ``hydra/launcher=stacked_slurm`` waits on its stacks' jobs the same way
  (:func:`wait`, :func:`job_ended`: the error names every member of the stack).
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides, run_job, setup_globals
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
from omegaconf import DictConfig, OmegaConf, open_dict

from regnet.signals import NotRequeued

log = logging.getLogger(__name__)

#: squeue's states of a job that will not run again (a requeued job goes back to PENDING instead)
ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "REVOKED",
         "TIMEOUT"}  # fmt: skip


class JobEnded(NotRequeued):
    """A SLURM job ended without handing back its result (``scancel``, out of memory, a node failure) and was not
    requeued: the sweep exits 1 naming its run; the same command resumes it (or trains it again)."""


class SlurmLauncher(SubmititSlurmLauncher):
    """hydra-submitit-launcher's SlurmLauncher that leaves completed runs out of the array and notices jobs that end
    without a result (module docstring)."""

    poll_s = (5.0, 60.0)  # squeue every 5 s at first, then every tenth of the time waited, at most every 60 s
    grace_s = 5.0  # an ended job's result may reach a shared file system a little after squeue says it ended

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from regnet.lifecycle import already_completed, read_or_set_aside

        setup_globals()
        jobs = {initial_job_idx + i: list(o) for i, o in enumerate(job_overrides)}
        configs, run_dirs = {}, {}
        sweep_hydra = HydraConfig.instance().cfg
        try:
            for idx, overrides in jobs.items():
                configs[idx], run_dirs[idx] = self._planned(overrides, idx)
        finally:
            HydraConfig.instance().cfg = sweep_hydra  # the submitted jobs get the sweep's state, as before
        done = [i for i in jobs if run_dirs[i] and already_completed(read_or_set_aside(run_dirs[i]), configs[i])]
        todo = {i: o for i, o in jobs.items() if i not in done}
        log.info(f"{len(done)} of {len(jobs)} runs already completed; submitting {len(todo)}")
        submitted = self._submit(todo) if todo else {}
        returns = {}
        for idx in done:  # the job itself, here: the run finds its record and returns it
            returns[idx] = run_job(hydra_context=self.hydra_context, task_function=self.task_function,
                                   config=configs[idx], job_dir_key="hydra.sweep.dir",
                                   job_subdir_key="hydra.sweep.subdir")  # fmt: skip
        returns |= self._wait(submitted, jobs, run_dirs)
        return [returns[idx] for idx in jobs]

    def _planned(self, overrides: list[str], idx: int) -> tuple[DictConfig, Path | None]:
        """The job's sweep config and the run directory Hydra will give it (None if it cannot be computed here:
        the job is then submitted and says why itself)."""
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(cfg.hydra.job):
            cfg.hydra.job.id, cfg.hydra.job.num = f"job_id_for_{idx}", idx
        try:
            HydraConfig.instance().set_config(cfg)  # hydra.sweep.subdir reads ${hydra:...}
            return cfg, Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
        except Exception as err:  # noqa: BLE001  (an interpolation error, reported by the job)
            log.debug(f"job #{idx}: no run directory before submission ({err})")
            return cfg, None

    def _submit(self, todo: dict[int, list[str]]) -> dict[int, Any]:
        """The jobs as one array (hydra-submitit-launcher's parameters, its job numbers kept); their submitit jobs."""
        import submitit

        params = dict(self.params)
        init = {"folder": params.pop("submitit_folder")}
        if "max_num_timeout" in params:
            init["slurm_max_num_timeout"] = params.pop("max_num_timeout")
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
        common = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in common else f"{self._EXECUTOR}_{k}": v for k, v in params.items()})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
        for idx, overrides in todo.items():
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        state = Singleton.get_state()
        args = [(o, "hydra.sweep.dir", idx, f"job_id_for_{idx}", state) for idx, o in todo.items()]
        return dict(zip(todo, executor.map_array(self, *zip(*args)), strict=True))

    def _wait(self, submitted: dict[int, Any], jobs: dict[int, list[str]], run_dirs: dict) -> dict[int, JobReturn]:
        """Each job's JobReturn once it has handed back its result; a failed one with :class:`JobEnded` where it
        ended without one (:func:`wait`)."""
        returns: dict[int, JobReturn] = {}
        for idx, state in wait(submitted, self.poll_s, self.grace_s).items():
            if state is None:
                returns[idx] = submitted[idx].results()[0]
            else:
                err = job_ended(submitted[idx], state, [run_dirs[idx]], " ".join(jobs[idx]))
                returns[idx] = JobReturn(overrides=jobs[idx], status=JobStatus.FAILED, _return_value=err)
        return returns


def wait(jobs: dict[Any, Any], poll_s: tuple[float, float] = (5.0, 60.0), grace_s: float = 5.0) -> dict[Any, Any]:
    """Wait until each submitit job of ``jobs`` has ended: None for one that handed back its result (read it with
    ``job.result()``), or the state squeue gave one that ended, or is no longer listed, without a result (after
    ``grace_s``: its result may reach a shared file system late). squeue every ``poll_s[0]`` s at first, then every
    tenth of the time waited, at most every ``poll_s[1]`` s. The SLURM launcher's wait and the stacked one's."""
    done: dict[Any, Any] = {}
    pending, ended, start, next_poll = dict(jobs), {}, time.monotonic(), 0.0
    while pending:
        for key, job in list(pending.items()):
            if _has_result(job):
                done[key] = None
            elif key in ended and time.monotonic() - ended[key][1] > grace_s:
                done[key] = ended[key][0]
            else:
                continue
            del pending[key]
        now = time.monotonic()
        if pending and now >= next_poll:
            states = queue_states()
            for key, job in pending.items() if states is not None else ():
                state = states.get(job.job_id, "no longer listed")
                if state in ENDED or job.job_id not in states:
                    ended.setdefault(key, (state, now))
                else:
                    ended.pop(key, None)  # requeued meanwhile
            next_poll = now + min(poll_s[1], max(poll_s[0], (now - start) / 10))
        if pending:
            time.sleep(1)
    return done


def job_ended(job: Any, state: str, run_dirs: Sequence[Path | None], name: str) -> JobEnded:
    """The error of a SLURM job that ended (``state``) without a result, naming its runs (a stack's job: every
    member) and, where they were interrupted, the step they are checkpointed at; logged."""
    records = [_record(d) for d in run_dirs]
    many, joined = len(run_dirs) > 1, ", ".join(map(str, run_dirs))
    if run_dirs and all(r.get("status") == "interrupted" for r in records):
        last = [(r.get("attempts") or [{}])[-1] for r in records]
        why = last[0].get("reason") or "a signal"
        steps = "/".join(dict.fromkeys(str(a.get("end_step")) for a in last))
        runs = f"runs {joined} were" if many else f"run {run_dirs[0]} was"
        what = f"{runs} interrupted ({why}) at step {steps}, checkpoint written"
        then = f"run the same command to resume {'them' if many else 'it'}"
    else:
        what = f"run {run_dirs[0] or name} has no result" if not many else f"{name} of runs {joined} has no result"
        then = f"see {job.paths.stderr}; run the same command to run {'them' if many else 'it'} again"
    whose = "their" if many else "its"
    message = f"{what}; {whose} SLURM job {job.job_id} ended ({state}) without being requeued: {then}"
    log.error(message)
    return JobEnded(message)


def queue_states() -> dict[str, str] | None:
    """This user's SLURM jobs as squeue lists them, one entry per array task (``<job>_<task>``): their states; None
    if squeue cannot be asked (the controller is down: nothing is concluded from that)."""
    command = ["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T", f"--user={getpass.getuser()}"]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        log.warning(f"squeue failed ({err}); asking again later")
        return None
    if out.returncode != 0:
        log.warning(f"squeue failed ({out.stderr.strip()}); asking again later")
        return None
    return dict(line.split("|", 1) for line in out.stdout.splitlines() if "|" in line)


def _has_result(job: Any) -> bool:
    try:  # refresh a shared file system's view of the folder, as submitit does
        job.paths.folder.chmod(job.paths.folder.stat().st_mode)
    except OSError:
        pass
    return job.paths.result_pickle.exists()


def _record(run_dir: Path | None) -> dict[str, Any]:
    from regnet.results import RESULTS

    try:
        record = json.loads((run_dir / RESULTS).read_text()) if run_dir else {}
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}
