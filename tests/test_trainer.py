"""regnet/trainer.py: the Trainer every run and stack gets."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.trainer import call
from omegaconf import open_dict

from regnet.data.mnist import MNIST
from regnet.trainer import STEP_HOOKS, make_trainer
from tests.conftest import compose_cfg, tiny


def test_deterministic_keeps_the_kernels_but_not_the_nan_fill(tmp_path):
    """trainer.deterministic (the CPU default) turns deterministic kernels on; the NaN fill of every new tensor,
    which only exposes reads of uninitialised memory and cost ~70 fills per LeNet step, stays off."""
    cfg = compose_cfg(tiny("trainer.deterministic=true", "logger=none"))
    with open_dict(cfg):
        cfg.callbacks = None
    before = torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory
    try:
        torch.utils.deterministic.fill_uninitialized_memory = True
        make_trainer(cfg, tmp_path, MNIST(root=str(tmp_path)))
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.utils.deterministic.fill_uninitialized_memory is False
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.utils.deterministic.fill_uninitialized_memory = before[1]


class Counts(L.Callback):
    def __init__(self):
        self.calls = 0

    def on_before_backward(self, trainer, pl_module, loss):
        self.calls += 1


def test_a_callback_costs_nothing_in_the_step_hooks_it_does_not_override(tmp_path):
    """Every callback's inherited per-step hooks are None (Lightning skips them: no call, no profiler context);
    the ones it overrides stay and are called; the per-epoch hooks are untouched."""
    cfg = compose_cfg(tiny("logger=none", f"hydra.run.dir={tmp_path}"), return_hydra_config=True)
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)
    counts, own = Counts(), L.Callback()
    own.on_train_batch_end = lambda *args: None  # a hook set on an instance is its own: kept
    trainer = make_trainer(cfg, tmp_path, MNIST(root=str(tmp_path)), [counts, own])
    assert len(trainer.callbacks) > 5  # the default callbacks, and this one
    assert callable(own.on_train_batch_end) and own.on_train_batch_start is None
    for callback in [cb for cb in trainer.callbacks if cb is not own]:
        for hook in STEP_HOOKS:
            overridden = getattr(type(callback), hook) is not getattr(L.Callback, hook)
            assert callable(getattr(callback, hook)) == overridden, (type(callback).__name__, hook)
        assert callable(callback.on_train_epoch_end)
    assert counts.on_after_backward is None and counts.on_before_backward is not None
    call._call_callback_hooks(trainer, "on_before_backward", torch.tensor(1.0))
    call._call_callback_hooks(trainer, "on_after_backward")  # skips the None hooks without an error
    assert counts.calls == 1
