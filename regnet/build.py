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
    if cfg.get("compile", False) is not False:
        compile_model(model, regularizers, cfg.compile)
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


#: compile= values besides true/false: torch.compile modes (reduce-overhead: CUDA graphs, for launch-bound models)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_model(model, regularizers, setting) -> None:
    """``compile=true`` (or a mode, ``compile=reduce-overhead``): ``torch.compile`` the model's forward in place
    (``nn.Module.compile``: the same parameters and ``state_dict`` keys, so checkpoints load either way). A penalty
    differentiating through the input gradient (``needs_input_grad``: the Jacobian's double backward,
    ``create_graph=True``) cannot run through a compiled graph (AOTAutograd has no double backward): refused
    before anything is written."""
    if setting is not True and setting not in COMPILE_MODES:
        raise ValueError(f"compile={setting!r} is invalid: use true, false or a mode: {', '.join(COMPILE_MODES)}")
    double = [r.name for r in regularizers if r.needs_input_grad]
    if double:
        raise ValueError(
            f"compile={str(setting).lower()} cannot train reg={double[0]}: torch.compile has no double backward; "
            "drop compile=..."
        )
    model.compile(mode=None if setting is True else setting)


def reg_names(cfg: DictConfig) -> list[str]:
    """The chosen regularizers' names, in order (``reg=[l2,jacobian]`` → ``["l2", "jacobian"]``)."""
    return list((cfg.reg or {}).keys())


def model_name(cfg: DictConfig) -> str:
    """The configured model's name in the registry ``regnet.models.MODELS`` (what ``model=`` chose: ``lenet``,
    ``lenet_dl``, ...); a class outside the registry (``model._target_=mypackage.Net``) is named by its target."""
    return registered_name(get_object(cfg.model._target_)) or cfg.model._target_
