"""Build a run's parts from its composed config: model, regularizers, LightningModule and DataModule.

The one place a config becomes objects, used by training (``regnet.train``) and by analysis
(``regnet.analysis.runs.load_run``) alike; it knows nothing of Trainers, output files or the CLI.
"""

from __future__ import annotations

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from regnet.experiments import check_variant
from regnet.losses import get_loss
from regnet.module import RegNetModule


def build(cfg: DictConfig) -> tuple[RegNetModule, L.LightningDataModule, list[L.Callback]]:
    """(module, datamodule, the regularizers' callbacks) from a composed config (no Trainer, no output files)."""
    check_variant(cfg)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    regularizers = [instantiate(r) for r in (cfg.reg or {}).values()]
    for reg in regularizers:
        reg.setup(model)
    module = RegNetModule(
        model,
        num_classes=cfg.data.num_classes,
        regularizers=regularizers,
        optimizer=instantiate(cfg.optim),
        scheduler=instantiate(cfg.sched.scheduler) if cfg.sched.scheduler is not None else None,
        scheduler_interval=cfg.sched.interval,
        loss=get_loss(cfg.loss),
    )
    callbacks = [cb for r in regularizers for cb in r.callbacks()]
    return module, datamodule, callbacks


def reg_names(cfg: DictConfig) -> list[str]:
    """The chosen regularizers' names, in order (``reg=[l2,jacobian]`` → ``["l2", "jacobian"]``)."""
    return list((cfg.reg or {}).keys())


def model_name(cfg: DictConfig) -> str:
    """``regnet.models.lenet.LeNet`` → ``lenet``: the model file's name, as chosen with ``model=``."""
    return cfg.model._target_.rsplit(".", 2)[-2]
