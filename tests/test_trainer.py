"""regnet/trainer.py: the Trainer every run and stack gets."""

from __future__ import annotations

import torch
from omegaconf import open_dict

from regnet.data.mnist import MNIST
from regnet.trainer import make_trainer
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
