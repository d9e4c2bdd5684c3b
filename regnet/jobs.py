"""Where a sweep's jobs run.

- :func:`pin_to_gpu`: job k of a sweep on several GPUs trains on GPU k mod #GPUs.
- :func:`share_cpu_cores`: K jobs at once on the CPU give torch 1/K of the cores each.
"""

from __future__ import annotations

import os

import torch
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from regnet.config import gpu_count, gpu_for_job


def pin_to_gpu(cfg: DictConfig, hydra_cfg) -> None:
    """In a sweep on a machine with several GPUs, job k trains on GPU k mod #GPUs (unless devices are set)."""
    gpus = gpu_count()
    if hydra_cfg.mode != RunMode.MULTIRUN or gpus < 2 or cfg.trainer.accelerator not in ("auto", "gpu", "cuda"):
        return
    if cfg.trainer.devices in (1, "1", "auto"):
        with open_dict(cfg):
            cfg.trainer.devices = [gpu_for_job(hydra_cfg.job.num, gpus)]


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def threads_per_job(hydra_cfg, cores: int) -> int | None:
    """CPU threads for one job of a local sweep whose jobs run at once on this machine: 1/K of the ``cores``
    for joblib's ``n_jobs`` = K > 1, ``cpus_per_task`` for submitit's local executor (it starts every job at
    once); None (torch's default) for one run, SLURM (its allocation sets the cores) and other launchers."""
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    launcher = hydra_cfg.launcher
    target = str(launcher.get("_target_", ""))
    if target.endswith("JoblibLauncher") and int(launcher.get("n_jobs") or 1) > 1:
        return max(1, cores // int(launcher.n_jobs))
    if target.endswith("submitit_launcher.LocalLauncher") and launcher.get("cpus_per_task"):
        return int(launcher.cpus_per_task)
    return None


def share_cpu_cores(cfg: DictConfig, hydra_cfg) -> int:
    """CPU training in a local sweep of K jobs at once: each job gives torch 1/K of the cores
    (:func:`threads_per_job`): oversubscribed cores train several times slower (benchmarks/RESULTS.md, the
    grid row). OMP_NUM_THREADS or MKL_NUM_THREADS set by the user win. Returns the thread count torch uses."""
    on_cpu = cfg.trainer.accelerator == "cpu" or (cfg.trainer.accelerator == "auto" and gpu_count() == 0)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = threads_per_job(hydra_cfg, cores)
    if on_cpu and threads and not any(os.environ.get(v) for v in THREAD_VARIABLES):
        torch.set_num_threads(threads)
    return torch.get_num_threads()
