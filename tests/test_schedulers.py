"""Schedulers: the learning rate the trainer records in metrics.csv, step by step (or epoch by epoch), is the
sequence PyTorch's own scheduler produces when stepped the same way."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import open_dict
from torch.optim import lr_scheduler as tls

from regnet.train import train
from tests.conftest import CONF, compose_cfg, tiny

EPOCHS, STEPS_PER_EPOCH, LR = 3, 3, 1e-2

# (sched, overrides, interval, PyTorch's scheduler built directly on an optimizer)
CASES = {
    "cosine_step": ("cosine", ["sched.scheduler.T_max=4"], "step", lambda o: tls.CosineAnnealingLR(o, T_max=4)),
    "cosine_epoch_whole_run": (
        "cosine",
        ["sched.interval=epoch"],
        "epoch",
        lambda o: tls.CosineAnnealingLR(o, T_max=EPOCHS),
    ),
    "cyclic_triangular2": (
        "cyclic",
        [
            "sched.scheduler.base_lr=1e-4",
            "sched.scheduler.max_lr=1e-2",
            "sched.scheduler.step_size_up=2",
            "sched.scheduler.mode=triangular2",
        ],
        "step",
        lambda o: tls.CyclicLR(o, base_lr=1e-4, max_lr=1e-2, step_size_up=2, mode="triangular2", cycle_momentum=False),
    ),  # fmt: skip
    "cyclic_epoch": (
        "cyclic",
        ["sched.scheduler.step_size_up=1", "sched.interval=epoch"],
        "epoch",
        lambda o: tls.CyclicLR(o, base_lr=1e-4, max_lr=1e-3, step_size_up=1, cycle_momentum=False),
    ),  # fmt: skip
    "warm_restarts": (
        "cosine_warm_restarts",
        ["sched.scheduler.T_0=2", "sched.scheduler.T_mult=2"],
        "step",
        lambda o: tls.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=2),
    ),  # fmt: skip
    "exponential_epoch": (
        "exponential",
        ["sched.scheduler.gamma=0.5"],
        "epoch",
        lambda o: tls.ExponentialLR(o, gamma=0.5),
    ),
    "exponential_step": (
        "exponential",
        ["sched.scheduler.gamma=0.8", "sched.interval=step"],
        "step",
        lambda o: tls.ExponentialLR(o, gamma=0.8),
    ),  # fmt: skip
}


def run(overrides: list[str], run_dir: Path) -> dict:
    """Compose as the CLI does and train into ``run_dir`` (logger and checkpoints included)."""
    cfg = compose_cfg(overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(copy.deepcopy(cfg))  # set_config makes its argument's hydra node read-only
    return train(cfg, run_dir)


def pytorch_lrs(make, n: int) -> list[float]:
    """The lr in force at each of ``n`` scheduler intervals, stepping after each, as Lightning does."""
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    sched = make(opt)
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("case", list(CASES))
def test_logged_lr_sequence_equals_pytorchs(case, data_root, tmp_path):
    sched, overrides, interval, make = CASES[case]
    results = run(
        [f"sched={sched}", *overrides, "optim=adam", f"optim.lr={LR}", f"data.root={data_root}",
         *tiny(f"trainer.max_epochs={EPOCHS}", f"trainer.limit_train_batches={STEPS_PER_EPOCH}",
               "trainer.log_every_n_steps=1")],
        tmp_path,
    )  # fmt: skip
    assert results["global_step"] == EPOCHS * STEPS_PER_EPOCH
    logged = pd.read_csv(tmp_path / "metrics.csv").dropna(subset=["lr-Adam"]).sort_values("step")["lr-Adam"]
    n = EPOCHS * STEPS_PER_EPOCH if interval == "step" else EPOCHS
    expected = pytorch_lrs(make, n)
    assert len(logged) == n
    assert logged.tolist() == pytest.approx(expected, rel=1e-6)
    assert len(set(round(v, 12) for v in expected)) > 1  # the schedule does change the lr


def yaml_lrs(sched: str, total: int, lr: float = 0.1) -> list[float]:
    """The lr in force at each of ``total`` intervals for ``sched=<name>`` as its YAML stands."""
    cfg = compose_cfg([f"sched={sched}"]).sched
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = instantiate(cfg.scheduler)(opt, total_steps=total) if cfg.scheduler is not None else None
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return lrs


# what each conf/sched YAML's comment says it does to the lr over 12 intervals, starting from optim.lr 0.1
DOCUMENTED = {
    "none": lambda lrs, s: lrs == [0.1] * 12,  # constant
    "multistep": lambda lrs, s: lrs == pytest.approx([0.1] * 4 + [0.01] * 4 + [0.001] * 4),  # × 0.1 at 1/3, 2/3
    "exponential": lambda lrs, s: lrs == pytest.approx([0.1 * 0.9**k for k in range(12)]),  # × gamma 0.9
    "cosine": lambda lrs, s: lrs[0] == 0.1 and all(a > b for a, b in zip(lrs, lrs[1:])) and lrs[-1] < 0.01,
    "cyclic": lambda lrs, s: lrs[0] == pytest.approx(s.base_lr) and lrs[1] > lrs[0],  # rises from base_lr
    "cosine_warm_restarts": lambda lrs, s: lrs[0] == 0.1 and lrs[1] < 0.1,  # anneals (restarts at T_0 250)
}


@pytest.mark.parametrize("sched", sorted(p.stem for p in (CONF / "sched").glob("*.yaml")))
def test_every_sched_yaml_changes_the_lr_as_documented(sched):
    cfg = compose_cfg([f"sched={sched}"]).sched
    assert cfg.interval in ("step", "epoch")
    assert DOCUMENTED[sched](yaml_lrs(sched, 12), cfg.scheduler)


def test_cosine_t_max_null_anneals_over_the_whole_run():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = instantiate(compose_cfg(["sched=cosine"]).sched.scheduler)(opt, total_steps=10)
    for _ in range(10):
        opt.step()
        sched.step()
    assert math.isclose(opt.param_groups[0]["lr"], 0.0, abs_tol=1e-12)


def test_study_schedules_compose_with_interval_step():
    for sched in ("cosine", "cyclic", "cosine_warm_restarts"):
        assert compose_cfg([f"sched={sched}"]).sched.interval == "step"
    assert compose_cfg(["sched=exponential"]).sched.interval == "epoch"


@pytest.mark.parametrize(
    "sched,override,message",
    [
        ("cyclic", "sched.scheduler.mode=sawtooth", "mode='sawtooth' is unknown"),
        ("cyclic", "sched.scheduler.max_lr=1e-5", "need 0 < base_lr ≤ max_lr"),
        ("cosine", "sched.scheduler.T_max=0", "T_max=0 is invalid"),
        ("cosine_warm_restarts", "sched.scheduler.T_mult=0", "T_mult=0 is invalid"),
    ],
)
def test_bad_settings_fail_in_one_line(sched, override, message):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    factory = instantiate(compose_cfg([f"sched={sched}", override]).sched.scheduler)
    with pytest.raises(ValueError, match=message):
        factory(opt, total_steps=10)
