"""Train one run: ``python -m regnet.train [group=choice ...] [key=value ...]``; sweeps with ``-m``.

    python -m regnet.train                                   # LeNet on MNIST, no regularization
    python -m regnet.train model=resnet18 reg=svb -m seed=0,1,2,3,4
    python -m regnet.train experiment=hoffman2019_mnist -m variant=no_reg,l2,jacobi seed=0,1

A run's directory depends only on its overrides (``outputs/<task_name>/<overrides>/``), so running the
same command again skips completed runs (``force=true`` retrains) and resumes interrupted ones from
``checkpoints/last.ckpt``. It ends with ``results.json`` (see ``regnet/results.py``).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

import regnet
from regnet.build import build, model_name, reg_names
from regnet.callbacks.divergence import DivergenceCheck
from regnet.callbacks.throughput import Throughput
from regnet.errors import Diverged, one_line
from regnet.hparams_search import objective_value
from regnet.jobs import pin_to_gpu, run_lock, share_cpu_cores
from regnet.loggers.resume import end_loggers, start_loggers
from regnet.module import RegNetModule
from regnet.results import LAST_CHECKPOINT, git_commit, read_results, write_atomic, write_results


def bind_run_dir(cfg: DictConfig, run_dir: Path) -> None:
    """Outside a Hydra job (tests, notebooks composing with ``return_hydra_config=True``), point
    ``${hydra:runtime.output_dir}`` at ``run_dir`` so the logger and checkpoints land there."""
    if "hydra" in cfg:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(run_dir)
        HydraConfig.instance().set_config(cfg)


class TrainingFailed(RuntimeError):
    """A run failed after training started; its results.json says ``failed``."""


def check_seed(seed: Any) -> None:
    """A seed is an integer in [0, 2³² − 1] (what numpy and torch accept)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"seed={seed!r} is invalid: it must be an integer in [0, 4294967295], e.g. seed=0")


def preflight(cfg: DictConfig, module: RegNetModule, datamodule) -> None:
    """Fail before training, with one line, on anything that would otherwise fail later: missing or
    corrupt dataset files, a model that does not fit the data, bad optimizer or trainer settings."""
    epochs, steps = cfg.trainer.max_epochs, cfg.trainer.get("max_steps", -1)
    if (epochs is None or epochs <= 0) and not (steps and steps > 0):
        raise ValueError(f"trainer.max_epochs={epochs!r} is invalid: it must be a positive integer "
                         "(or set trainer.max_steps > 0)")
    try:
        module.optimizer_factory(list(module.model.parameters())[:1])
    except ValueError as err:
        raise ValueError(f"optim: {err} (check optim.lr and the other optim.* values)") from None
    datamodule.prepare_data()
    datamodule.setup("fit")  # on the CPU; fit moves the splits to the training device
    images, _ = datamodule.splits["test"]
    was_training = module.model.training
    module.model.eval()
    try:
        with torch.no_grad():
            module.model(datamodule.normalize(images[:2].cpu()).to(next(module.model.parameters()).device))
    except RuntimeError as err:
        shape = "×".join(str(d) for d in images.shape[1:])
        first = str(err).splitlines()[0]
        raise ValueError(f"model {model_name(cfg)} does not fit {datamodule.name} inputs ({shape}): {first}") from None
    finally:
        module.model.train(was_training)


def checkpoint_step(path: Path) -> int | None:
    """The checkpoint's global step, or None (and the file set aside as ``*.corrupt``) if a kill interrupted
    its write."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False).get("global_step", 0))
    except Exception as err:  # truncated zip, EOF, unpickling errors
        path.replace(path.with_suffix(".ckpt.corrupt"))
        print(f"[regnet] {path} is unreadable ({type(err).__name__}); starting this run from scratch")
        return None


def train(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train, test and write ``results.json`` into ``run_dir``; returns the results.

    Bad input raises before anything is written. Once training has started, a diverged run
    (NaN/Inf loss) or any other exception is recorded in ``results.json`` (status ``diverged`` /
    ``failed``, with the error; the traceback in ``error.txt``) and re-raised.
    """
    run_dir = Path(run_dir)
    bind_run_dir(cfg, run_dir)
    with run_lock(run_dir) as (held, owner):
        if not held:
            pid = f" (pid {owner})" if owner else ""
            print(f"[regnet] {run_dir} is being trained by another process{pid}; skipping it. Run the "
                  "command again once that process has ended (it resumes or skips the run).", file=sys.stderr)
            return {"status": "running elsewhere", "run_dir": str(run_dir)}
        done = read_results(run_dir)
        if done and done.get("status") == "completed" and not cfg.force:
            print(f"[regnet] {run_dir} is already completed (results.json); skipping. Use force=true to retrain.")
            return done
        return _train(cfg, run_dir)


def _train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """:func:`train` once the run is known to need training (and this process holds its lock)."""
    check_seed(cfg.seed)
    L.seed_everything(cfg.seed, workers=True)
    module, datamodule, reg_callbacks = build(cfg)
    preflight(cfg, module, datamodule)
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values()] + reg_callbacks + [DivergenceCheck()]
    loggers = [instantiate(lg) for lg in (cfg.logger or {}).values()]
    no_val = {"limit_val_batches": 0} if not getattr(datamodule, "val_fraction", 0) else {}
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                     default_root_dir=str(run_dir), **no_val)

    ckpt_path, resumed_from = cfg.ckpt_path, None
    last = run_dir / LAST_CHECKPOINT
    if ckpt_path is None and last.is_file() and not cfg.force and (resumed_from := checkpoint_step(last)) is not None:
        ckpt_path = str(last)
        print(f"[regnet] resuming from {last} (step {resumed_from})")
    start_loggers(loggers, cfg, resumed=ckpt_path is not None, step=resumed_from)  # regnet/loggers/resume.py

    start = time.perf_counter()
    record = partial(_record, cfg, run_dir, trainer, module, datamodule, callbacks, start, resumed_from)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}  # last epoch's train/val
        for d in trainer.test(module, datamodule=datamodule, verbose=False):
            metrics.update({k: float(v) for k, v in d.items()})
    except Diverged as err:
        record("diverged", {}, error=str(err), diverged_step=err.step)
        raise
    except BaseException as err:  # KeyboardInterrupt too: the run directory says what happened
        message = f"{type(err).__name__}: {err}".splitlines()[0]
        record("failed", {}, error=message, trace=traceback.format_exc())
        if isinstance(err, Exception):
            raise TrainingFailed(f"run failed during training ({message}); see {run_dir / 'error.txt'}") from err
        raise
    return record("completed", metrics)


def _record(cfg, run_dir, trainer, module, datamodule, callbacks, start, resumed_from, status, metrics, *,
            error=None, trace=None, diverged_step=None) -> dict[str, Any]:
    """Assemble and atomically write ``results.json`` (rank 0 only); returns it."""
    if not metrics:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    throughput = next((c for c in callbacks if isinstance(c, Throughput)), None)
    results = {
        "status": status,
        "model": model_name(cfg),
        "data": datamodule.name,
        "reg": reg_names(cfg),
        "variant": cfg.variant or "+".join(reg_names(cfg)) or "none",
        "seed": cfg.seed,
        "max_epochs": cfg.trainer.max_epochs,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "test_acc": metrics.get("test/acc"),
        "test_loss": metrics.get("test/loss"),
        "val_acc": metrics.get("val/acc"),
        "wall_time_s": time.perf_counter() - start,
        "resumed_from_step": resumed_from,
        "train_images_per_s": throughput.images_per_s if throughput else None,
        "device": str(module.device) + (f" ({torch.cuda.get_device_name(module.device)})" if module.device.type == "cuda" else ""),
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
    if trainer.is_global_zero:
        if trace:
            write_atomic(run_dir / "error.txt", trace)
        write_results(run_dir, results)
        end_loggers(trainer.loggers, status, run_dir)
    return results


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    pin_to_gpu(cfg, hydra_cfg)
    share_cpu_cores(cfg, hydra_cfg)
    try:
        results = train(cfg, run_dir)
    except (Diverged, TrainingFailed):
        raise  # recorded in results.json; in a sweep the other jobs go on, the sweep exits non-zero at the end
    except Exception as err:  # bad input, found before training started: stop now, with one line
        if os.environ.get("REGNET_FULL_ERROR") == "1":
            raise
        print(f"regnet: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
    return objective_value(cfg, results)  # metrics[cfg.objective] (test/acc by default): what a sweeper maximises


def _flags_first(argv: list[str]) -> list[str]:
    """Let ``-m``/``--multirun`` stand anywhere on the command line, as users write it."""
    flags = [a for a in argv if a in ("-m", "--multirun")]
    return flags + [a for a in argv if a not in ("-m", "--multirun")]


def cli() -> None:
    """``python -m regnet.train``: errors end in one line on stderr and exit code 2 (1 for a run that
    failed or diverged during training); HYDRA_FULL_ERROR=1 shows the full traceback."""
    sys.argv[1:] = _flags_first(sys.argv[1:])
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        os.environ["REGNET_FULL_ERROR"] = "1"
        main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let exceptions reach us instead of Hydra's multi-line report
    try:
        main()
    except (Diverged, TrainingFailed) as err:
        print(f"regnet: {err}", file=sys.stderr)
        sys.exit(1)
    except Exception as err:
        print(f"regnet: {one_line(err)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli()
