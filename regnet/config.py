"""OmegaConf resolvers used by ``conf/`` (registered when ``regnet`` is imported)."""

from __future__ import annotations

from omegaconf import OmegaConf


def _dirname(overrides: str) -> str:
    """A run's directory name from its overrides; ``default`` when there are none."""
    return overrides.replace("/", "_") or "default"


def _on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _parallel_jobs(jobs_per_gpu: int) -> int:
    """How many sweep jobs run at once: jobs_per_gpu on each visible GPU (or on the CPU when there is none)."""
    if int(jobs_per_gpu) < 1:
        raise ValueError(f"jobs_per_gpu={jobs_per_gpu!r} is invalid: it must be a positive integer")
    return max(1, gpu_count()) * int(jobs_per_gpu)


def gpu_for_job(job_num: int, gpus: int) -> int:
    """The GPU a sweep job is pinned to: round-robin over the visible GPUs."""
    return job_num % gpus


def register_resolvers() -> None:
    for name, fn in (("regnet.dirname", _dirname), ("regnet.on_cpu", _on_cpu), ("regnet.parallel_jobs", _parallel_jobs)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
