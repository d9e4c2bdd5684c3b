"""``results.json``: one per run, the record analysis reads; this module owns its schema and writes it
atomically (temp file + rename).

Schema (docs/outputs.md): status, model, data, reg (list), variant, tags (list), seed, max_epochs, epochs, global_step,
test_acc, test_loss, val_acc, wall_time_s, resumed_from_step, train_images_per_s, device, regnet_version,
git_commit, torch_version, torch_threads, everything training measured under ``metrics``, the pixel
normalisation under ``normalization``, the resolved config under ``config``; ``error`` and ``diverged_step``
where the run stopped; ``attempts``, every attempt that wrote the file (regnet/signals.py). A sweep job
stopped by bad input records only status (``invalid``), error, seed, variant and config
(:func:`invalid_results`). When and by whom it is written is the run's lifecycle (regnet/lifecycle.py).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

import regnet
from regnet.build import model_name, reg_names
from regnet.callbacks.throughput import Throughput
from regnet.files import write_atomic

RESULTS = "results.json"
LAST_CHECKPOINT = "checkpoints/last.ckpt"  # what a rerun resumes from and analysis loads, relative to the run dir


def run_results(
    status: str,
    cfg: DictConfig,
    trainer: L.Trainer,
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    metrics: dict[str, float],
    *,
    wall_time_s: float,
    resumed_from_step: int | None,
    error: str | None = None,
    diverged_step: int | None = None,
    attempts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ``results.json`` of a run that started training and ended with ``status`` (``completed``,
    ``diverged``, ``failed``): what was asked (``cfg``), what ran (``trainer``: epochs, steps, throughput),
    where (``module.device``), what it measured (``metrics``), and the data's normalisation."""
    throughput = next((c for c in trainer.callbacks if isinstance(c, Throughput)), None)
    device = str(module.device)
    if module.device.type == "cuda":
        device += f" ({torch.cuda.get_device_name(module.device)})"
    results = {
        "status": status,
        "model": model_name(cfg),
        "data": datamodule.name,
        "reg": reg_names(cfg),
        "variant": cfg.variant or "+".join(reg_names(cfg)) or "none",
        "tags": [str(t) for t in cfg.get("tags") or []],  # tags=[...]: labels, not part of the run's name
        "seed": cfg.seed,
        "max_epochs": cfg.trainer.max_epochs,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "test_acc": metrics.get("test/acc"),
        "test_loss": metrics.get("test/loss"),
        "val_acc": metrics.get("val/acc"),
        "wall_time_s": wall_time_s,
        "resumed_from_step": resumed_from_step,
        "train_images_per_s": throughput.images_per_s if throughput else None,
        "device": device,
        "regnet_version": regnet.__version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "metrics": metrics,
        "normalization": datamodule.pixel_stats,
        "config": {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k != "hydra"},
    }
    if error is not None:
        results["error"] = error
    if diverged_step is not None:
        results["diverged_step"] = diverged_step
    if attempts is not None:
        results["attempts"] = attempts
    return results


def invalid_results(cfg: DictConfig, message: str) -> dict[str, Any]:
    """The ``results.json`` of a sweep job stopped by bad input before training (``status: invalid``); its
    config unresolved, since resolving may be what failed."""
    config = {k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}
    return {"status": "invalid", "error": message, "seed": cfg.get("seed"), "variant": cfg.get("variant"),
            "config": config}  # fmt: skip


def write_results(run_dir: str | os.PathLike, results: dict[str, Any]) -> Path:
    path = Path(run_dir) / RESULTS
    write_atomic(path, json.dumps(results, indent=2, sort_keys=False, default=str) + "\n")
    return path


def git_commit() -> str | None:
    """The commit of the regnet checkout, if regnet runs from one."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
