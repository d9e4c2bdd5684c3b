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
import sys
import time
import traceback
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from regnet.build import build
from regnet.callbacks.throughput import Throughput
from regnet.jobs import run_lock
from regnet.loggers.csv import CSVLogger
from regnet.results import LAST_CHECKPOINT, read_results, temp_beside, write_results
from regnet.stacked.data import StackedData
from regnet.stacked.layers import member_state, stack_models
from regnet.stacked.module import MemberLoggers, StackedModule, member_metrics
from regnet.stacked.regularizers import MemberRegs
from regnet.train import _record, check_seed, checkpoint_step, preflight

STACKS = ".stacks"
#: callbacks the stack does not take from the members' configs: it checkpoints itself, per member at the end
NOT_STACKED_CALLBACKS = ("ModelCheckpoint", "ConfusionMatrix")


def resolved(cfg: DictConfig) -> DictConfig:
    """A member's config with every interpolation resolved (``${hydra:runtime.output_dir}`` included: call
    while that member's Hydra config is current) and without the ``hydra`` node."""
    container = OmegaConf.to_container(cfg, resolve=True)
    container.pop("hydra", None)
    return OmegaConf.create(container)


def stack_dir_for(run_dirs: list[Path]) -> Path:
    """``<common parent>/.stacks/<hash of the member run dirs>``: the same members find the same checkpoint."""
    key = "\n".join(sorted(str(Path(d).resolve()) for d in run_dirs))
    parent = Path(os.path.commonpath([str(Path(d).resolve().parent) for d in run_dirs]))
    return parent / STACKS / hashlib.sha1(key.encode()).hexdigest()[:12]


def train_stack(cfgs: list[DictConfig], run_dirs: list[str | Path], *, stack_dir: str | Path | None = None,
                extra_callbacks: tuple = ()) -> list[dict[str, Any]]:  # fmt: skip
    """Train the members (resolved configs, see :func:`resolved`) as one stack; returns their results, in order.

    Members already completed (and not ``force``) or being trained by another process are left out (their
    results are returned as they are). Raises ValueError (one line) before anything is written if the
    members cannot be stacked."""
    run_dirs = [Path(d) for d in run_dirs]
    out: list[dict[str, Any] | None] = [None] * len(cfgs)
    with ExitStack() as locks:
        todo = []
        for i, (cfg, run_dir) in enumerate(zip(cfgs, run_dirs, strict=True)):
            held, owner = locks.enter_context(run_lock(run_dir))
            done = read_results(run_dir)
            if not held:
                print(f"[regnet] {run_dir} is being trained by another process (pid {owner}); skipping it.", file=sys.stderr)
                out[i] = {"status": "running elsewhere", "run_dir": str(run_dir)}
            elif done and done.get("status") == "completed" and not cfg.force:
                print(f"[regnet] {run_dir} is already completed (results.json); skipping. Use force=true to retrain.")
                out[i] = done
            else:
                todo.append(i)
        if todo:
            results = _train([cfgs[i] for i in todo], [run_dirs[i] for i in todo], stack_dir, extra_callbacks)
            for i, r in zip(todo, results, strict=True):
                out[i] = r
    return out


def _train(cfgs, run_dirs, stack_dir, extra_callbacks) -> list[dict[str, Any]]:
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
    regs = MemberRegs([m.regularizers for m in modules])
    factory = modules[0].optimizer_factory
    base_wd = float(factory.keywords.get("weight_decay", 0.0)) if isinstance(factory, partial) else 0.0
    if isinstance(factory, partial) and "weight_decay" in factory.keywords:
        factory = partial(factory.func, *factory.args, **{k: v for k, v in factory.keywords.items() if k != "weight_decay"})
    weight_decay = torch.tensor([float(w) or base_wd for w in regs.weight_decay])
    trainer_cfg = OmegaConf.to_container(cfg0.trainer)
    clip_val = trainer_cfg.pop("gradient_clip_val", None)
    clip_algorithm = trainer_cfg.pop("gradient_clip_algorithm", None) or "norm"
    module = StackedModule(
        wide, regs, num_classes=cfg0.data.num_classes, optimizer=factory, scheduler=modules[0].scheduler_factory,
        scheduler_interval=modules[0].scheduler_interval, loss=cfg0.loss,
        generator_seeds=[int(c.seed) for c in cfgs], generator_states=gen_states, weight_decay=weight_decay,
        clip_val=clip_val, clip_algorithm=clip_algorithm,
    )  # fmt: skip
    data = StackedData(base, [int(c.data.seed) for c in cfgs])

    callbacks = [instantiate(c) for c in (cfg0.callbacks or {}).values()
                 if str(c.get("_target_", "")).rsplit(".", 1)[-1] not in NOT_STACKED_CALLBACKS]  # fmt: skip
    steps = next((c.get("every_n_train_steps") for c in (cfg0.callbacks or {}).values()
                  if str(c.get("_target_", "")).endswith("ModelCheckpoint") and c.get("every_n_train_steps")), None)  # fmt: skip
    ckpt_dir = stack_dir / "checkpoints"
    callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0, every_n_epochs=1, save_on_train_epoch_end=True))
    if steps:
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0, every_n_train_steps=int(steps)))
    callbacks += list(extra_callbacks)
    member_loggers = []
    for cfg in cfgs:
        lgs = [instantiate(lg) for lg in (cfg.logger or {}).values()]
        member_loggers.append(next((lg for lg in lgs if isinstance(lg, CSVLogger)), None))
    no_val = {"limit_val_batches": 0} if not base.val_fraction else {}
    trainer: L.Trainer = instantiate(trainer_cfg, callbacks=callbacks, logger=MemberLoggers(member_loggers),
                                     default_root_dir=str(stack_dir), **no_val)  # fmt: skip

    ckpt_path, resumed_from = None, None
    last = stack_dir / "checkpoints" / "last.ckpt"
    if last.is_file() and not cfg0.force and (resumed_from := checkpoint_step(last)) is not None:
        ckpt_path = str(last)
        print(f"[regnet] resuming the stack of {S} runs from {last} (step {resumed_from})")
    if ckpt_path is None:
        for lg in member_loggers:
            if lg is not None:
                lg.start_fresh()
    print(f"[regnet] training {S} runs as one stack (its checkpoints: {stack_dir})")
    L.seed_everything(int(cfg0.seed), workers=True, verbose=False)  # the stack's own stream: dropout masks
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
        fit_metrics = dict(trainer.callback_metrics)
        test_metrics = {}
        for d in trainer.test(module, datamodule=data, verbose=False):
            test_metrics.update(d)
    except BaseException as err:
        message = f"{type(err).__name__}: {err}".splitlines()[0]
        trace = traceback.format_exc()
        for s in range(S):
            _member_record(cfgs[s], run_dirs[s], trainer, modules[s], datamodules[s], callbacks, start, resumed_from,
                           run_dirs, s, "failed", error=message, trace=trace)  # fmt: skip
        raise
    results = []
    for s in range(S):
        _write_member_checkpoint(run_dirs[s], modules[s], member_state(wide, s), trainer)
        metrics = member_metrics(fit_metrics, s) | member_metrics(test_metrics, s)
        first_bad = int(module.first_bad[s])
        if first_bad >= 0:
            loss = float(module.bad_loss[s])
            results.append(_member_record(cfgs[s], run_dirs[s], trainer, modules[s], datamodules[s], callbacks, start,
                                          resumed_from, run_dirs, s, "diverged", metrics=metrics, diverged_step=first_bad,
                                          error=f"training loss became {loss} at step {first_bad}: the run diverged"))  # fmt: skip
        else:
            results.append(_member_record(cfgs[s], run_dirs[s], trainer, modules[s], datamodules[s], callbacks, start,
                                          resumed_from, run_dirs, s, "completed", metrics=metrics))  # fmt: skip
    return results


def _member_record(cfg, run_dir, trainer, module, datamodule, callbacks, start, resumed_from, run_dirs, s, status, *,
                   metrics=None, error=None, trace=None, diverged_step=None) -> dict[str, Any]:  # fmt: skip
    """``regnet.train._record`` for member s (its results.json schema), plus ``stacked``."""
    metrics = metrics if metrics is not None else member_metrics(dict(trainer.callback_metrics), s)
    results = _record(cfg, run_dir, trainer, module, datamodule, callbacks, start, resumed_from, status, metrics or {"": 0.0},
                      error=error, trace=trace, diverged_step=diverged_step)  # fmt: skip
    results["metrics"] = metrics
    results["device"] = str(trainer.strategy.root_device)
    results["stacked"] = {"members": [str(d) for d in run_dirs], "index": s}
    throughput = next((c for c in callbacks if isinstance(c, Throughput)), None)
    if throughput is not None and throughput.images_per_s:
        results["stacked"]["stack_images_per_s"] = throughput.images_per_s * len(run_dirs)
    write_results(run_dir, results)
    return results


def _write_member_checkpoint(run_dir: Path, module, model_state: dict, trainer) -> None:
    """``<run dir>/checkpoints/last.ckpt``: the member's RegNetModule ``state_dict`` (what ``load_run`` loads)."""
    module.model.load_state_dict(model_state)
    path = Path(run_dir) / LAST_CHECKPOINT
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(path)
    os.close(fd)
    checkpoint = {"state_dict": module.state_dict(), "epoch": trainer.current_epoch, "global_step": trainer.global_step,
                  "pytorch-lightning_version": L.__version__, "stacked": True}  # fmt: skip
    try:
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
