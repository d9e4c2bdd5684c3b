"""``hydra/launcher=stacked``: a sweep's compatible jobs train as stacks (regnet/stacked/train.py), one stack
at a time in this process; the other jobs run one after another as ordinary jobs, as Hydra's basic launcher
runs them, each named with its reason on one line.

    python -m regnet.train -m hydra/launcher=stacked experiment=hoffman2019_mnist \\
        variant=no_reg,no_reg_no_dropout,l2,jacobi,jacobi_no_dropout,svb seed=0,1,2,3,4

Every member goes through Hydra's ``run_job`` (its ``.hydra/`` files, its output directory, the job callbacks)
with a task that only collects its resolved config; then the stack trains and each member's ``JobReturn``
gets its test accuracy, or its ``Diverged``/failure, as the ordinary job would. Hydra loads launchers only
from the ``hydra_plugins`` package: ``hydra_plugins/regnet_stacked_launcher`` names this class there.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from regnet.config import gpu_count
from regnet.errors import Diverged
from regnet.hparams_search import objective_value, search_env
from regnet.lifecycle import already_completed, read_or_set_aside
from regnet.stacked.grouping import group, refusal, shared_settings, stack_key

log = logging.getLogger(__name__)


class StackedLauncher(Launcher):
    def __init__(self, max_members: int = 30, slurm: Any = None, max_num_timeout: int = 3) -> None:
        super().__init__()
        self.max_members = int(max_members)
        # each stack as one SLURM job: submitit's SlurmExecutor parameters (sbatch's names); None: in this process
        self.slurm = dict(slurm) if slurm else None
        self.max_num_timeout = int(max_num_timeout)
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def _job_config(self, overrides: Sequence[str], idx: int) -> DictConfig:
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.id = idx
            cfg.hydra.job.num = idx
        return cfg

    def _submit(self, job: StackJob):
        """The stack as one SLURM job (submitit), its files in ``<sweep dir>/.submitit/``."""
        import submitit

        folder = Path(str(self.config.hydra.sweep.dir)) / ".submitit" / "%j"
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=self.max_num_timeout)
        executor.update_parameters(**{"job_name": "stack", **self.slurm})
        slurm_job = executor.submit(job)
        log.info(f"submitted the stack of {len(job.cfgs)} runs as SLURM job {slurm_job.job_id}")
        return slurm_job

    @staticmethod
    def _wait(stacks: list[tuple[Any, list[Path]]]) -> list[Any]:
        """Each stack's SLURM job (with its members' run directories) once it has ended, by squeue, not submitit's
        sacct (regnet/slurm.py): None where it handed back its result, else the :class:`regnet.slurm.JobEnded` that
        names its members (a plain ``scancel``)."""
        from regnet.slurm import job_ended, wait

        states = wait(dict(enumerate(job for job, _ in stacks)))
        return [None if (state := states[k]) is None else job_ended(job, state, run_dirs, "the stack")
                for k, (job, run_dirs) in enumerate(stacks)]  # fmt: skip

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from regnet.stacked.train import resolved  # heavy (torch, lightning): only when launching

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = [self._job_config(o, initial_job_idx + i) for i, o in enumerate(job_overrides)]
        names = [" ".join(filter_overrides(o)) or "(no overrides)" for o in job_overrides]
        stackable, ordinary, reasons = [], [], {}
        for i, cfg in enumerate(configs):
            HydraConfig.instance().set_config(cfg)
            run_dir = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
            if already_completed(read_or_set_aside(run_dir), cfg):
                ordinary.append(i)  # the ordinary job says it is completed and skips it
                continue
            reason = refusal(cfg)
            if reason:
                reasons[i] = reason
                ordinary.append(i)
            else:
                stackable.append(i)
        keyed = [(stack_key(configs[i]), shared_settings(configs[i])) for i in stackable]
        stacks = [[stackable[j] for j in g] for g in group(keyed, self.max_members)]
        for g in [g for g in stacks if len(g) == 1]:
            reasons[g[0]] = "no other job of this sweep shares its model, data, optimizer, schedule and epochs"
            ordinary.append(g[0])
        stacks = [g for g in stacks if len(g) > 1]
        log.info(
            f"Launching {len(configs)} jobs: {sum(map(len, stacks))} in {len(stacks)} stacks "
            f"(at most {self.max_members} each), {len(ordinary)} ordinary"
        )
        if stacks and all(str(configs[i].trainer.accelerator) == "cpu" or not gpu_count() for g in stacks for i in g):
            log.warning("stacked on a CPU: no faster than separate runs there (benchmarks/RESULTS.md); running anyway")
        for i, name in enumerate(names):
            log.info(f"\t#{initial_job_idx + i} : {name}")
        for i in sorted(reasons):
            log.info(f"not stacked, runs as an ordinary job: #{initial_job_idx + i} {names[i]}: {reasons[i]}")

        returns: list[JobReturn | None] = [None] * len(configs)
        submitted = []
        for k, members in enumerate(stacks):
            collected: list[tuple[JobReturn, Any]] = []
            for i in members:
                box: dict[str, Any] = {}

                def collect(task_cfg: DictConfig, box=box) -> None:
                    box["cfg"] = resolved(task_cfg)
                    box["run_dir"] = HydraConfig.get().runtime.output_dir

                ret = run_job(
                    hydra_context=self.hydra_context,
                    task_function=collect,
                    config=configs[i],
                    job_dir_key="hydra.sweep.dir",
                    job_subdir_key="hydra.sweep.subdir",
                )
                if ret.status == JobStatus.FAILED:  # resolving the config failed: as the ordinary job would
                    ret.return_value  # noqa: B018  (raises the job's exception)
                collected.append((ret, box))
            log.info(f"Stack {k + 1}/{len(stacks)}: jobs " + ", ".join(f"#{initial_job_idx + i}" for i in members))
            env = [search_env(configs[i]) for i in members]  # a search's trial of each member
            job = StackJob([b["cfg"] for _, b in collected], [Path(b["run_dir"]) for _, b in collected], env)
            if self.slurm is not None:
                submitted.append((members, collected, self._submit(job)))
                continue
            try:
                results = job.run()
            except ValueError:
                raise  # bad input, found before training: one line from the CLI
            except Exception as err:  # noqa: BLE001  (recorded in every member's results.json)
                results = [err] * len(members)
            for i, (ret, box), res in zip(members, collected, results, strict=True):
                returns[i] = _job_return(ret, res, box["cfg"])
        stack_jobs = [(job, [Path(b["run_dir"]) for _, b in collected]) for _, collected, job in submitted]
        ended = self._wait(stack_jobs) if submitted else []
        for k, (members, collected, slurm_job) in enumerate(submitted):  # each stack's SLURM job, once it has ended
            try:
                results = slurm_job.result() if ended[k] is None else [ended[k]] * len(members)
            except Exception as err:  # noqa: BLE001  (the job recorded it in every member's results.json)
                results = [err] * len(members)
            for i, (ret, box), res in zip(members, collected, results, strict=True):
                returns[i] = _job_return(ret, res, box["cfg"])
        for i in sorted(ordinary):
            HydraConfig.instance().set_config(configs[i])
            returns[i] = run_job(
                hydra_context=self.hydra_context,
                task_function=self.task_function,
                config=configs[i],
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
        return returns


class StackJob:
    """One stack's training: in this process (:meth:`run`) or as one SLURM job (submitit calls the object). A
    signal stops it at the stack's step with its checkpoint, every member ``interrupted`` (regnet/signals.py);
    on SLURM, submitit then requeues the job (:meth:`checkpoint`) and the stack resumes from that step."""

    def __init__(self, cfgs: list[DictConfig], run_dirs: list[Path], env: list[dict[str, str]] | None = None):
        self.cfgs, self.run_dirs, self.env = cfgs, run_dirs, env  # env: each member's search trial (train_stack)

    def run(self) -> list[dict[str, Any]]:
        from regnet.signals import CheckpointAtSignal, Interrupted, SignalGuard
        from regnet.stacked.train import stack_dir_for, train_stack

        stack_dir = stack_dir_for(self.run_dirs)
        with SignalGuard() as guard:
            at_signal = CheckpointAtSignal(guard, stack_dir / "checkpoints")
            try:
                return train_stack(
                    self.cfgs, self.run_dirs, stack_dir=stack_dir, extra_callbacks=(at_signal,), member_env=self.env
                )
            except Interrupted as err:
                guard.hand_over(err)  # in a SLURM job: submitit requeues it
                raise

    __call__ = run

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's requeue hook: the same stack again (it resumes from its checkpoint)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def _job_return(collected: JobReturn, result: dict | BaseException, cfg: DictConfig) -> JobReturn:
    """The member's JobReturn: what its ordinary job returns (``metrics[cfg.objective]``, test/acc unless a search
    sets a validation metric), or the exception that job would have raised."""
    ret = copy.copy(collected)
    if isinstance(result, BaseException):
        ret.return_value, ret.status = result, JobStatus.FAILED
    elif result.get("status") == "diverged":
        ret.return_value = Diverged(int(result.get("diverged_step") or 0), float("nan"))
        ret.status = JobStatus.FAILED
    else:
        try:
            ret.return_value, ret.status = objective_value(cfg, result), JobStatus.COMPLETED
        except ValueError as err:  # a completed run without the objective: a failed trial of a search
            ret.return_value, ret.status = err, JobStatus.FAILED
    return ret
