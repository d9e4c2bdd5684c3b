"""Which jobs of a sweep can train as one stack: :func:`stack_key` (or the one-line reason a job cannot) and
:func:`group` (jobs with equal keys, split where their regularizers' shared settings conflict, at most
``max_members`` per stack).

Members of a stack may differ in ``seed`` (init and data order), in the per-member scalars (dropout p, weight
decay, each penalty's coefficient, SVB on/off with its ε and ``every``, input and weight noise σ), and in
anything that only changes the initial weights (``model.init``). Everything else is in the key: the model's
structure (module types and settings, parameter shapes), the data config (dataset, root, batch size,
augmentation, validation split; not its seed), optimizer, schedule, trainer (epochs, limits, precision) and
loss.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from regnet.losses import LOSSES, get_loss
from regnet.stacked.layers import stack_refusal, structure

OPTIMIZERS = ("torch.optim.SGD", "torch.optim.Adam")  # weight decay = grad += wd·w, applied per member
PRECISIONS = ("32-true", "32", 32)


def _plain(node) -> object:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def refusal(cfg: DictConfig) -> str | None:
    """Why this run cannot train in a stack (one line), or None."""
    t = cfg.trainer
    if cfg.get("ckpt_path") is not None:
        return "ckpt_path is set (a stack resumes only from its own checkpoint)"
    if t.get("accumulate_grad_batches", 1) not in (None, 1):
        return f"trainer.accumulate_grad_batches={t.accumulate_grad_batches} is not supported stacked"
    devices = t.get("devices", 1)
    if not (devices in (1, "1", "auto") or (isinstance(_plain(devices), list) and len(devices) == 1)) or str(
        t.get("strategy", "auto")
    ) not in ("auto", "None", "single_device"):
        return f"trainer.devices={_plain(devices)} / strategy={t.get('strategy', 'auto')}: a stack trains on one device"
    if t.get("precision", "32-true") not in PRECISIONS:
        return f"trainer.precision={t.precision} is not supported stacked (32-true only)"
    loss = getattr(get_loss(cfg.loss), "name", str(cfg.loss))
    if loss not in LOSSES:  # every loss of regnet/losses is written over a member axis
        return f"loss={loss} has no stacked version"
    if cfg.optim._target_ not in OPTIMIZERS:
        return f"optimizer {cfg.optim._target_}: per-member weight decay is implemented for {', '.join(OPTIMIZERS)}"
    for name, reg in (cfg.reg or {}).items():
        cls = get_class(reg._target_)
        reason = cls.why_not_stacked()
        if reason:
            return f"reg.{name} does not stack: {reason}"
    with torch.random.fork_rng(devices=[]):
        model = instantiate(cfg.model)
    return stack_refusal(model)


def stack_key(cfg: DictConfig) -> str:
    """Equal keys: the runs may share a stack (up to their regularizers' shared settings, see :func:`group`)."""
    with torch.random.fork_rng(devices=[]):
        model = instantiate(cfg.model)
    data = {k: v for k, v in _plain(cfg.data).items() if k != "seed"}
    parts = {
        "model": hashlib.sha1(repr(structure(model)).encode()).hexdigest(),
        "data": data,
        "optim": _plain(cfg.optim),
        "sched": _plain(cfg.sched),
        "trainer": _plain(cfg.trainer),
        "loss": _plain(cfg.loss),
        "val": cfg.data.get("val_fraction"),
        "top_k": _plain(cfg.get("top_k")),
    }
    return json.dumps(parts, sort_keys=True, default=str)


def shared_settings(cfg: DictConfig) -> dict[str, tuple]:
    """Regularizer name → (target, the settings that must agree among the members using it)."""
    out = {}
    for name, reg in (cfg.reg or {}).items():
        keys = get_class(reg._target_).shared
        out[name] = (reg._target_, *(str(_plain(reg.get(k))) for k in keys))
    return out


@dataclass
class Stack:
    key: str
    members: list[int] = field(default_factory=list)
    settings: dict[str, tuple] = field(default_factory=dict)

    def accepts(self, settings: dict[str, tuple]) -> bool:
        return all(self.settings.get(k, v) == v for k, v in settings.items())


def group(jobs: list[tuple[str, dict[str, tuple]]], max_members: int) -> list[list[int]]:
    """Job indices grouped into stacks: equal key, compatible regularizer settings, ≤ max_members each; in
    the order the jobs came."""
    if max_members < 1:
        raise ValueError(f"hydra.launcher.max_members={max_members!r} is invalid: it must be a positive integer")
    stacks: list[Stack] = []
    for i, (key, settings) in enumerate(jobs):
        stack = next((s for s in stacks if s.key == key and len(s.members) < max_members and s.accepts(settings)), None)
        if stack is None:
            stack = Stack(key)
            stacks.append(stack)
        stack.members.append(i)
        stack.settings.update(settings)
    return [s.members for s in stacks]
