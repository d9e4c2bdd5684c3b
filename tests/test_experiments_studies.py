"""Experiments of seeds 002-004: each composes with the study's numbers, and each (experiment, variant)
pair trains a few steps on tiny data through ``regnet.train.train`` (augmentation off: data.augment=none)."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from regnet.build import model_name
from tests.conftest import REPO, compose_cfg, tiny
from tests.test_schedulers import run

CONVNET_VARIANTS = ["relu", "sigmoid", "dropout_0.25", "dropout_0.5", "dropout_0.75", "dropout_1.0", "bn",
                    "bn_no_dropout", "xavier"]  # fmt: skip
# each seed-004 variant trained with a different model of the family, so every model trains once
SMALL_CNN_VARIANTS = {
    "plain": "lenet_small",
    "aug": "lenet_bn",
    "aug_erasing": "lenet_drop",
    "cosine": "lenet_drop_bn",
    "cosine_aug": "lenet_dl",
    "cyclic": "lenet_deep",
    "cyclic_triangular2": "lenet_small",
    "warm_restarts": "lenet_bn",
    "warm_restarts_1000": "simplenet",
}
PAIRS = (
    [("lenet5_lecun", None, None)]
    + [("convnet_ablation", v, None) for v in CONVNET_VARIANTS]
    + [("mnist_small_cnns", v, m) for v, m in SMALL_CNN_VARIANTS.items()]
)


def overrides(experiment: str, variant: str | None, model: str | None) -> list[str]:
    return [f"experiment={experiment}"] + ([f"variant={variant}"] if variant else []) + ([f"model={model}"] if model else [])


def test_every_study_variant_file_is_tested():
    mine = set(CONVNET_VARIANTS) | set(SMALL_CNN_VARIANTS)
    assert mine <= {p.stem for p in (REPO / "conf" / "variant").glob("*.yaml")}


@pytest.mark.parametrize("experiment,variant,model", PAIRS)
def test_composes_with_the_studys_numbers(experiment, variant, model):
    cfg = compose_cfg(overrides(experiment, variant, model))
    assert cfg.task_name == experiment
    assert cfg.variant == (variant or "lecun1998")
    if experiment == "lenet5_lecun":
        assert cfg.model._target_.endswith("LeNet5") and cfg.loss == "bce_onehot"
        assert (cfg.data.pad, cfg.data.image_size, list(cfg.data.mean), list(cfg.data.std)) == (2, 32, [0.078], [0.78])
        assert cfg.optim._target_ == "torch.optim.Adam" and cfg.optim.lr == 1e-3 and cfg.data.batch_size == 128
        assert cfg.sched.scheduler.gamma == 0.9 and cfg.sched.interval == "epoch" and cfg.trainer.max_epochs == 20
    elif experiment == "convnet_ablation":
        assert cfg.model._target_.endswith("ConvNet") and cfg.loss == "nll" and cfg.model.log_softmax
        assert cfg.optim._target_ == "torch.optim.SGD" and (cfg.optim.lr, cfg.optim.momentum) == (0.01, 0.5)
        assert (cfg.data.batch_size, cfg.data.eval_batch_size, cfg.trainer.max_epochs) == (64, 1000, 2)
        assert cfg.sched.scheduler is None
        expected_dropout = {"bn": 0.5}.get(variant, float(variant.split("_")[1]) if variant.startswith("dropout_") else 0.0)
        assert cfg.model.dropout == expected_dropout
        assert cfg.model.batchnorm == (variant in ("bn", "bn_no_dropout", "xavier"))
        assert cfg.model.activation == ("sigmoid" if variant == "sigmoid" else "relu")
        assert cfg.model.init == ("xavier" if variant == "xavier" else "default")
    else:
        assert model_name(cfg) == model and cfg.loss == "cross_entropy"
        assert cfg.optim._target_ == "torch.optim.Adam" and cfg.data.val_fraction == 0.2
        assert (list(cfg.data.mean), list(cfg.data.std)) == ([0.0], [1.0])
        assert cfg.data.batch_size == (100 if variant in ("plain", "aug", "aug_erasing", "cosine") else 250)
        assert cfg.data.augment == {"aug_erasing": "mnist_affine_erasing", "plain": "none", "cosine": "none"}.get(
            variant, "mnist_affine"
        )
        assert cfg.trainer.log_every_n_steps == 1
        sched = cfg.sched.scheduler
        if variant.startswith("cosine"):
            assert sched.T_max == 1000 and cfg.sched.interval == "step"
        elif variant.startswith("cyclic"):
            assert (sched.base_lr, sched.step_size_up, sched.cycle_momentum) == (1e-4, 2500, False)
            assert (sched.mode, sched.max_lr) == (("triangular", 1e-3) if variant == "cyclic" else ("triangular2", 1e-2))
        elif variant.startswith("warm_restarts"):
            assert (sched.T_0, sched.T_mult) == ((250, 2) if variant == "warm_restarts" else (1000, 1))
        else:
            assert sched is None and cfg.optim.lr == 1e-2


@pytest.mark.parametrize("experiment,variant,model", PAIRS)
def test_few_steps(experiment, variant, model, data_root, tmp_path):
    results = run(
        [*overrides(experiment, variant, model), f"data.root={data_root}", "data.augment=none",
         *tiny("trainer.limit_val_batches=1")],
        tmp_path,
    )  # fmt: skip
    assert results["status"] == "completed" and results["global_step"] == 3
    assert results["variant"] == (variant or "lecun1998")
    assert 0.0 <= results["test_acc"] <= 1.0 and results["test_loss"] > 0
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    test = metrics.dropna(subset=["test/acc"]).iloc[-1]
    assert test["test/err"] == pytest.approx(1 - test["test/acc"], abs=1e-6)
    assert test["test/err_top5"] == pytest.approx(1 - test["test/acc_top5"], abs=1e-6)
    if experiment == "mnist_small_cnns":
        assert "val/err" in metrics.columns  # the 20 % validation split
        if results["config"]["sched"]["interval"] == "step" and results["config"]["sched"]["scheduler"]:
            assert metrics["lr-Adam"].notna().sum() == 3  # the lr of every step


def test_dropout_one_stays_at_chance_in_training(data_root, tmp_path):
    """Seed 003's p = 1 row: fc2 sees zeros in training, so the training outputs are the same for all images."""
    results = run(
        [*overrides("convnet_ablation", "dropout_1.0", None), f"data.root={data_root}", *tiny()], tmp_path
    )
    assert results["config"]["model"]["dropout"] == 1.0
    assert results["metrics"]["train/acc"] <= 0.5  # one class for every image


@pytest.mark.slow
def test_dotted_variant_names_sweep_on_the_command_line(data_root, tmp_path):
    """``variant=dropout_0.25,dropout_1.0`` works as written in a real ``-m`` sweep (Hydra accepts the dot)."""
    env = {**os.environ, "REGNET_DATA": str(data_root), "PYTHONPATH": str(REPO)}
    args = ["experiment=convnet_ablation", "-m", "variant=dropout_0.25,dropout_1.0", f"hydra.sweep.dir={tmp_path}",
            *tiny()]  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "regnet.train", *args], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    dirs = sorted(p.parent.name for p in tmp_path.glob("*/results.json"))
    assert len(dirs) == 2
    assert "variant=dropout_0.25" in dirs[0] and "variant=dropout_1.0" in dirs[1]
