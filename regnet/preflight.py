"""Checks before training: bad input fails here with one line naming the key, before anything is written.

Everything a run would otherwise trip over minutes later: a seed numpy cannot take, optimizer values that are
not finite numbers, no epochs, schedule settings the scheduler refuses, missing or corrupt dataset files, a model
that does not fit the data's shape or
number of classes, a ``ckpt_path`` that is not a checkpoint of this model (or that cannot be loaded weights-only).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig

from regnet.build import model_name
from regnet.checkpoints import UntrustedCheckpoint, load_checkpoint
from regnet.module import RegNetModule


def check_seed(seed: Any) -> None:
    """A seed is an integer in [0, 2³² − 1] (what numpy and torch accept)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"seed={seed!r} is invalid: it must be an integer in [0, 4294967295], e.g. seed=0")


def check_optim(optim: DictConfig) -> None:
    """Every numeric optimizer setting (lr, momentum, betas, ...) is a finite number: ``optim.lr=abc`` or
    ``optim.lr=nan`` would otherwise fail inside torch with a message that names no key, or train on NaN."""
    for key, value in optim.items():
        if str(key).startswith("_"):
            continue
        for v in value if isinstance(value, (list, tuple, ListConfig)) else [value]:
            if isinstance(v, str) or (isinstance(v, float) and not math.isfinite(v)):
                raise ValueError(f"optim.{key}={value!r} is invalid: it must be a finite number")


def check_trainer(trainer: DictConfig) -> None:
    epochs, steps = trainer.max_epochs, trainer.get("max_steps", -1)
    if (epochs is None or epochs <= 0) and not (steps and steps > 0):
        raise ValueError(
            f"trainer.max_epochs={epochs!r} is invalid: it must be a positive integer (or set trainer.max_steps > 0)"
        )
    clip = trainer.get("gradient_clip_val")
    if clip is not None and not (math.isfinite(clip) and clip >= 0):
        raise ValueError(f"trainer.gradient_clip_val={clip!r} is invalid: it must be a finite number ≥ 0 (or null)")
    every = trainer.get("check_val_every_n_epoch")
    if every is not None and every < 1:
        raise ValueError(f"trainer.check_val_every_n_epoch={every!r} is invalid: it must be ≥ 1 (or null)")


def check_scheduler(module: RegNetModule) -> None:
    """The schedule's settings, on a throwaway optimizer: Lightning builds the real one only once fit starts."""
    if module.scheduler_factory is not None:
        module.scheduler_factory(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), total_steps=1000)


def check_checkpoint(path: str, module: RegNetModule, trust: bool = False) -> None:
    """``ckpt_path=`` names a readable Lightning checkpoint whose model weights fit this run's model; it loads
    weights-only unless ``trust`` (``trust_checkpoint=true``), else UntrustedCheckpoint (regnet/checkpoints.py)."""
    if not Path(path).is_file():
        raise ValueError(f"ckpt_path={path} is invalid: no such file")
    try:
        state = load_checkpoint(path, trust=trust)["state_dict"]
    except UntrustedCheckpoint:
        raise
    except Exception as err:
        raise ValueError(f"ckpt_path={path} is invalid: not a Lightning checkpoint ({type(err).__name__})") from None
    expected = {k: v.shape for k, v in module.state_dict().items() if k.startswith("model.")}
    found = {k: v.shape for k, v in state.items() if k.startswith("model.")}
    if expected != found:
        differ = sorted(set(expected) ^ set(found)) or sorted(k for k in expected if expected[k] != found[k])
        raise ValueError(f"ckpt_path={path} is invalid: its weights do not fit this model ({differ[0]} differs)")


def check_fits(cfg: DictConfig, module: RegNetModule, datamodule) -> None:
    """The model takes the data's images and returns one logit per class of the data."""
    datamodule.prepare_data()
    datamodule.setup("fit")  # on the CPU; fit moves the splits to the training device
    images, _ = datamodule.splits["test"]
    shape = "×".join(str(d) for d in images.shape[1:])
    was_training = module.model.training
    module.model.eval()
    try:
        with torch.no_grad():
            logits = module.model(datamodule.normalize(images[:2].cpu()).to(module.device))
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise ValueError(f"model {model_name(cfg)} does not fit {datamodule.name} inputs ({shape}): {first}") from None
    finally:
        module.model.train(was_training)
    if logits.shape[-1] != cfg.data.num_classes:
        raise ValueError(
            f"model {model_name(cfg)} gives {logits.shape[-1]} logits but {datamodule.name} has "
            f"{cfg.data.num_classes} classes: set model.num_classes={cfg.data.num_classes} (or leave it "
            "to follow data.num_classes)"
        )


def preflight(cfg: DictConfig, module: RegNetModule, datamodule) -> None:
    """Every check above, in the order a run would meet them."""
    check_optim(cfg.optim)
    try:
        module.optimizer_factory(list(module.model.parameters())[:1])
    except ValueError as err:
        raise ValueError(f"optim: {err} (check optim.lr and the other optim.* values)") from None
    check_trainer(cfg.trainer)
    check_scheduler(module)
    check_fits(cfg, module, datamodule)
    if cfg.ckpt_path is not None:
        check_checkpoint(str(cfg.ckpt_path), module, trust=bool(cfg.get("trust_checkpoint")))
