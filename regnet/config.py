"""OmegaConf resolvers used by ``conf/`` (registered when ``regnet`` is imported)."""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import OmegaConf


def run_name(overrides: Sequence[str], ignored: Sequence[str]) -> str:
    """A run's directory name: its sorted overrides ``key=value`` joined by ``,`` (as Hydra's
    ``override_dirname``), without those that cannot change its result; ``default`` when none is left.

    ``ignored`` lists keys that are left out together with everything below them (``logger`` drops
    ``logger=[csv,tensorboard]`` and ``logger.csv.name=x``; ``callbacks.progress_bar`` drops its refresh rate),
    so the same command with another progress bar, logger or device resumes or skips the same run."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    def kept(key: str) -> bool:
        return not any(key == k or key.startswith(k + ".") for k in ignored)

    parsed = OverridesParser.create().parse_overrides([str(o) for o in overrides])
    lines = sorted(o.input_line for o in parsed if kept(o.key_or_group))
    return ",".join(lines).replace("/", "_") or "default"


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
    for name, fn in (
        ("regnet.run_name", run_name),
        ("regnet.on_cpu", _on_cpu),
        ("regnet.parallel_jobs", _parallel_jobs),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
