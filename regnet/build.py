"""Build a run's parts from its composed config: model, regularizers, LightningModule and DataModule.

The one place a config becomes objects, used by training (``regnet.train``) and by analysis
(``regnet.analysis.runs.load_run``) alike; it knows nothing of Trainers, output files or the CLI.
"""

from __future__ import annotations

import lightning as L
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig

from regnet.experiments import check_variant
from regnet.losses import get_loss
from regnet.models import registered_name
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
        top_k=list(cfg.get("top_k", [5])),  # runs saved before top_k was a setting logged top-5
    )
    callbacks = [cb for r in regularizers for cb in r.callbacks()]
    return module, datamodule, callbacks


def reg_names(cfg: DictConfig) -> list[str]:
    """The chosen regularizers' names, in order (``reg=[l2,jacobian]`` → ``["l2", "jacobian"]``)."""
    return list((cfg.reg or {}).keys())


def model_name(cfg: DictConfig) -> str:
    """The configured model's name in the registry ``regnet.models.MODELS`` (what ``model=`` chose: ``lenet``,
    ``lenet_dl``, ...); a class outside the registry (``model._target_=mypackage.Net``) is named by its target."""
    return registered_name(get_object(cfg.model._target_)) or cfg.model._target_
