"""Train a stack: S runs that share architecture, data, batch size, optimizer, schedule and epochs, as one
wide model in one process (``train_stack``); each member's run directory ends as its separate run's would.

Each member is built exactly as ``regnet.train`` builds it (``seed_everything(seed)`` then ``build(cfg)``),
so it starts from the same weights (and SVB's orthogonal init); its random generator starts where its
separate run's global one would be at the first step. The stack's own state (all members' weights,
optimizer, schedule, loops, RNG, per-member sums) is checkpointed under ``<sweep dir>/.stacks/<id>/``; the
same command after a kill resumes from there. At the end every member gets ``checkpoints/last.ckpt`` (a
RegNetModule ``state_dict`` of its own model), ``metrics.csv`` (its rows only) and ``results.json``
(``regnet.train``'s schema, with ``"stacked": {"members": [run dirs], "index": i}``).
"""

from __future__ import annotations

import hashlib
import os
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from omegaconf import DictConfig, OmegaConf

from regnet.build import build
from regnet.callbacks.checkpoint import LastCheckpoint, fit_metrics
from regnet.errors import headline
from regnet.files import replacing
from regnet.lifecycle import RunLifecycle, TrainingFailed, checkpoint_step
from regnet.log import get_logger
from regnet.loggers.csv import CSVLogger
from regnet.preflight import check_seed, preflight
from regnet.results import LAST_CHECKPOINT
from regnet.stacked.data import StackedData
from regnet.stacked.layers import member_state, stack_models
from regnet.stacked.loggers import MemberLoggers, member_metrics
from regnet.stacked.module import StackedModule
from regnet.stacked.regularizers import member_weight_decay, stack_regularizers
from regnet.trainer import configured, make_trainer, weights_only

log = get_logger(__name__)

STACKS = ".stacks"
#: callbacks the stack does not take from the members' configs: it checkpoints itself, per member at the end
NOT_STACKED_CALLBACKS = ("ConfusionMatrix",)  # it writes into one run's directory


def resolved(cfg: DictConfig) -> DictConfig:
    """A member's config with every interpolation resolved (``${hydra:runtime.output_dir}`` included: call
    while that member's Hydra config is current) and without the ``hydra`` node."""
    container = OmegaConf.to_container(cfg, resolve=True)
    container.pop("hydra", None)
    return OmegaConf.create(container)


def stack_checkpoint(callback: Checkpoint, stack_dir: Path) -> LastCheckpoint:
    """A member's checkpoint callback, writing the stack's ``last.ckpt`` instead (same triggers)."""
    return LastCheckpoint(
        stack_dir / "checkpoints",
        every_n_epochs=int(getattr(callback, "every_n_epochs", 1) or 0),
        every_n_train_steps=int(getattr(callback, "every_n_train_steps", 0) or 0),
    )


def stack_dir_for(run_dirs: list[Path]) -> Path:
    """``<common parent>/.stacks/<hash of the member run dirs>``: the same members find the same checkpoint."""
    key = "\n".join(sorted(str(Path(d).resolve()) for d in run_dirs))
    parent = Path(os.path.commonpath([str(Path(d).resolve().parent) for d in run_dirs]))
    return parent / STACKS / hashlib.sha1(key.encode()).hexdigest()[:12]


class MemberLifecycle(RunLifecycle):
    """``RunLifecycle`` (lock, skip completed, results.json) of one stack member; its results.json also says
    which runs it trained with: ``"stacked": {"members": [run dirs], "index": i}``."""

    stacked: dict[str, Any] = {}

    def logged_metrics(self) -> dict[str, float]:
        return member_metrics(dict(self._trainer.callback_metrics), self.stacked["index"])  # m<s>/... → its own

    def extra_results(self) -> dict[str, Any]:
        return {"stacked": dict(self.stacked)}


def train_stack(
    cfgs: list[DictConfig],
    run_dirs: list[str | Path],
    *,
    stack_dir: str | Path | None = None,
    extra_callbacks: tuple = (),
    member_env: list[dict[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """Train the members (resolved configs, see :func:`resolved`) as one stack; returns their results, in order.

    Members already completed (and not ``force``) or being trained by another process are left out (their
    results are returned as they are). Bad input raises before anything is written; a failure during training
    is recorded in every member's results.json and raised as ``TrainingFailed``. ``member_env``: environment
    variables each member's job would have had (a search's trial, regnet/hparams_search/pruning.py); the stack
    trains with those the members share as they are, and those that differ as the members' values, comma-separated
    in the stack's member order."""
    run_dirs = [Path(d) for d in run_dirs]
    out: list[dict[str, Any] | None] = [None] * len(cfgs)
    with ExitStack() as stack:
        runs = [stack.enter_context(MemberLifecycle(cfg, d)) for cfg, d in zip(cfgs, run_dirs, strict=True)]
        todo = [i for i, run in enumerate(runs) if run.skipped is None]
        for i, run in enumerate(runs):
            if run.skipped is not None:
                out[i] = run.skipped
            else:
                run.stacked = {"members": [str(run_dirs[j]) for j in todo], "index": todo.index(i)}
        if len(todo) > 0:
            if member_env:
                stack.enter_context(_environment([member_env[i] for i in todo]))
            results = _train(
                [cfgs[i] for i in todo],
                [run_dirs[i] for i in todo],
                [runs[i] for i in todo],
                stack_dir,
                extra_callbacks,
            )
            for i, r in zip(todo, results, strict=True):
                out[i] = r
    return out


@contextmanager
def _environment(members: list[dict[str, str]]):
    """The members' environment variables set while the stack trains (see :func:`train_stack`)."""
    keys = sorted({k for env in members for k in env})
    values = [[env.get(k, "") for env in members] for k in keys]
    before = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: v[0] if len(set(v)) == 1 else ",".join(v) for k, v in zip(keys, values, strict=True)})
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _train(cfgs, run_dirs, runs, stack_dir, extra_callbacks) -> list[dict[str, Any]]:
    S = len(cfgs)
    stack_dir = Path(stack_dir) if stack_dir is not None else stack_dir_for(run_dirs)
    modules, datamodules, gen_states = [], [], []
    for cfg in cfgs:  # as regnet.train._train builds each run
        check_seed(cfg.seed)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        module, datamodule, _ = build(cfg)
        gen_states.append(torch.get_rng_state())
        modules.append(module)
        datamodules.append(datamodule)
    cfg0, base = cfgs[0], datamodules[0]
    preflight(cfg0, modules[0], base)
    wide = stack_models([m.model for m in modules])
    regs = stack_regularizers([m.regularizers for m in modules])
    factory = modules[0].optimizer_factory
    base_wd = float(factory.keywords.get("weight_decay", 0.0)) if isinstance(factory, partial) else 0.0
    if isinstance(factory, partial) and "weight_decay" in factory.keywords:
        factory = partial(
            factory.func, *factory.args, **{k: v for k, v in factory.keywords.items() if k != "weight_decay"}
        )
    weight_decay = torch.tensor([float(w) or base_wd for w in member_weight_decay([m.regularizers for m in modules])])
    trainer_cfg = OmegaConf.to_container(cfg0.trainer)
    clip_val = trainer_cfg.pop("gradient_clip_val", None)
    clip_algorithm = trainer_cfg.pop("gradient_clip_algorithm", None) or "norm"
    module = StackedModule(
        wide,
        regs,
        num_classes=cfg0.data.num_classes,
        optimizer=factory,
        scheduler=modules[0].scheduler_factory,
        scheduler_interval=modules[0].scheduler_interval,
        loss=modules[0].loss_fn,
        generator_seeds=[int(c.seed) for c in cfgs],
        generator_states=gen_states,
        weight_decay=weight_decay,
        clip_val=clip_val,
        clip_algorithm=clip_algorithm,
        top_k=modules[0].top_k,
    )
    data = StackedData(base, [int(c.data.seed) for c in cfgs])

    def adapt(callback: L.Callback) -> L.Callback | None:  # the stack checkpoints itself, per member at the end
        if type(callback).__name__ in NOT_STACKED_CALLBACKS:
            return None
        return stack_checkpoint(callback, stack_dir) if isinstance(callback, Checkpoint) else callback

    member_loggers = [next((lg for lg in configured(c.logger) if isinstance(lg, CSVLogger)), None) for c in cfgs]
    # How its Trainer differs from a run's (regnet/trainer.py): its own checkpoint, each member's CSV logger,
    # clipping per member (StackedModule) and no DivergenceCheck (StackedModule records a member's divergence, it
    # does not stop the others)
    logger = MemberLoggers(member_loggers)
    trainer = make_trainer(cfg0, stack_dir, base, extra_callbacks, adapt=adapt, logger=logger, trainer_cfg=trainer_cfg)

    ckpt_path, resumed_from = None, None
    last = stack_dir / "checkpoints" / "last.ckpt"
    only = weights_only(cfg0)
    if last.is_file() and not cfg0.force and (resumed_from := checkpoint_step(last, not only)) is not None:
        ckpt_path = str(last)
        log.info("resuming the stack of %d runs from %s (step %d)", S, last, resumed_from)
    if ckpt_path is None:
        for lg in member_loggers:
            if lg is not None:
                lg.start_fresh()
    log.info("training %d runs as one stack (its checkpoints: %s)", S, stack_dir)
    L.seed_everything(int(cfg0.seed), workers=True, verbose=False)  # the stack's own stream: dropout masks
    for run in runs:
        run.started(trainer, module, base, resumed_from)
    try:
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path, weights_only=only)
        metrics_of_fit = fit_metrics(trainer)  # the last epoch's train/val, also when fit resumed at its end
        test_metrics = {}
        for d in trainer.test(module, datamodule=data, verbose=False, weights_only=only):
            test_metrics.update(d)
    except BaseException as err:  # every member records it; then it ends the stack (as a separate run's would)
        for run in runs:
            try:
                run.failed(err)
            except TrainingFailed:
                pass
            run._trainer = None
        if isinstance(err, Exception):
            raise TrainingFailed(
                f"stack of {S} runs failed during training ({headline(err)}); see {run_dirs[0] / 'error.txt'}"
            ) from err
        raise
    results = []
    for s, run in enumerate(runs):
        _write_member_checkpoint(run_dirs[s], modules[s], member_state(wide, s), trainer)
        metrics = member_metrics(metrics_of_fit, s) | member_metrics(test_metrics, s)
        first_bad = int(module.first_bad[s])
        if first_bad >= 0:
            loss = float(module.bad_loss[s])
            error = f"training loss became {loss} at step {first_bad}: the run diverged"
            results.append(run.diverged(metrics, first_bad, error))
        else:
            results.append(run.completed(metrics))
    return results


def _write_member_checkpoint(run_dir: Path, module, model_state: dict, trainer) -> None:
    """``<run dir>/checkpoints/last.ckpt``: the member's RegNetModule ``state_dict`` (what ``load_run`` loads)."""
    module.model.load_state_dict(model_state)
    path = Path(run_dir) / LAST_CHECKPOINT
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "state_dict": module.state_dict(),
        "epoch": trainer.current_epoch,
        "global_step": trainer.global_step,
        "pytorch-lightning_version": L.__version__,
        "stacked": True,
    }
    with replacing(path, "wb") as f:
        torch.save(checkpoint, f)
