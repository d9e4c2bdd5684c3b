"""Experiments (``conf/experiment``) and their variants (``conf/variant``): each experiment lists its variants; every
listed (experiment, variant) pair composes with the study's numbers and trains a few steps on tiny data through
``regnet.train.train`` (augmentation off: augment=none); a variant of another study is an error."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from regnet.build import build, model_name
from regnet.errors import one_line
from tests.conftest import CONF, QUIET, compose_cfg, run_cli, tiny
from tests.test_schedulers import run


def names(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def variants_of(experiment: str) -> list[str]:
    return yaml.safe_load((CONF / "experiment" / f"{experiment}.yaml").read_text())["variants"]


CONVNET_VARIANTS = ["relu", "sigmoid", "dropout_0.25", "dropout_0.5", "dropout_0.75", "dropout_1.0", "bn",
                    "bn_no_dropout", "xavier"]  # fmt: skip
# each mnist_small_cnns variant trains with a different model of the family, so every model trains once
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
HOFFMAN_VARIANTS = ["no_reg", "no_reg_no_dropout", "l2", "jacobi", "jacobi_no_dropout", "svb"]
CIFAR_VARIANTS = ["no_reg", "l2", "jacobi", "svb"]
REG = {"no_reg": "none", "no_reg_no_dropout": "none", "l2": "l2", "jacobi": "jacobian", "jacobi_no_dropout": "jacobian",
       "svb": "svb"}  # fmt: skip
PAIRS = (
    [("hoffman2019_mnist", v, None) for v in variants_of("hoffman2019_mnist")]
    + [("cifar100_resnet18", v, None) for v in variants_of("cifar100_resnet18")]
    + [("lenet5_lecun", v, None) for v in variants_of("lenet5_lecun")]
    + [("convnet_ablation", v, None) for v in variants_of("convnet_ablation")]
    + [("mnist_small_cnns", v, SMALL_CNN_VARIANTS[v]) for v in variants_of("mnist_small_cnns")]
)


def overrides(experiment: str, variant: str | None, model: str | None) -> list[str]:
    return (
        [f"experiment={experiment}"]
        + ([f"variant={variant}"] if variant else [])
        + ([f"model={model}"] if model else [])
    )


def test_every_experiment_and_variant_file_is_tested():
    """PAIRS holds every experiment and every variant file (each variant belongs to a study that lists it), and
    each study lists the variants its documentation names."""
    assert sorted({e for e, _, _ in PAIRS}) == names("experiment")
    assert sorted({v for _, v, _ in PAIRS}) == names("variant")
    assert variants_of("hoffman2019_mnist") == HOFFMAN_VARIANTS and variants_of("cifar100_resnet18") == CIFAR_VARIANTS
    assert variants_of("convnet_ablation") == CONVNET_VARIANTS and variants_of("lenet5_lecun") == ["lecun1998"]
    assert variants_of("mnist_small_cnns") == list(SMALL_CNN_VARIANTS)
    for experiment in names("experiment"):  # the default (no variant=) is one of its variants
        assert compose_cfg([f"experiment={experiment}"]).variant in variants_of(experiment)


@pytest.mark.parametrize(
    "experiment,variant", [("hoffman2019_mnist", "cosine"), ("lenet5_lecun", "jacobi"), ("mnist_small_cnns", "l2")]
)
def test_a_variant_of_another_study_is_an_error(experiment, variant):
    cfg = compose_cfg([f"experiment={experiment}", f"variant={variant}"])
    with pytest.raises(ValueError) as err:
        build(cfg)
    assert one_line(err.value) == (
        f"variant={variant} is not a variant of experiment={experiment}: "
        f"choose one of {', '.join(variants_of(experiment))}"
    )
    build(compose_cfg([f"variant={variant}"]))  # without an experiment a variant refines the defaults


@pytest.mark.parametrize("experiment,variant,model", PAIRS)
def test_composes_with_the_studys_numbers(experiment, variant, model):
    cfg = compose_cfg(overrides(experiment, variant, model))
    assert cfg.task_name == experiment
    assert cfg.variant == variant
    if experiment in ("hoffman2019_mnist", "cifar100_resnet18"):
        hoffman = experiment == "hoffman2019_mnist"
        assert cfg.model._target_.endswith("LeNet" if hoffman else "ResNet18")
        assert cfg.loss._target_.endswith("CrossEntropy")
        assert cfg.optim._target_ == "torch.optim.SGD" and (cfg.optim.lr, cfg.optim.momentum) == (0.1, 0.9)
        assert cfg.data.batch_size == 100 and cfg.trainer.max_epochs == (250 if hoffman else 50)
        assert list(cfg.sched.scheduler.milestones) == [0.3333333333, 0.6666666667] and cfg.sched.scheduler.gamma == 0.1
        assert list(cfg.reg) == [REG[variant]]
        assert cfg.model.dropout == (0.0 if variant.endswith("no_dropout") or not hoffman else 0.5)
        assert not cfg.data.augment.geometric
    elif experiment == "lenet5_lecun":
        assert cfg.model._target_.endswith("LeNet5") and cfg.loss._target_.endswith("BCEOneHot")
        assert (cfg.data.pad, cfg.data.image_size, list(cfg.data.mean), list(cfg.data.std)) == (2, 32, [0.078], [0.78])
        assert cfg.optim._target_ == "torch.optim.Adam" and cfg.optim.lr == 1e-3 and cfg.data.batch_size == 128
        assert cfg.sched.scheduler.gamma == 0.9 and cfg.sched.interval == "epoch" and cfg.trainer.max_epochs == 20
    elif experiment == "convnet_ablation":
        assert cfg.model._target_.endswith("ConvNet") and cfg.loss._target_.endswith("NLL") and cfg.model.log_softmax
        assert cfg.optim._target_ == "torch.optim.SGD" and (cfg.optim.lr, cfg.optim.momentum) == (0.01, 0.5)
        assert (cfg.data.batch_size, cfg.data.eval_batch_size, cfg.trainer.max_epochs) == (64, 1000, 2)
        assert cfg.sched.scheduler is None
        expected_dropout = {"bn": 0.5}.get(
            variant, float(variant.split("_")[1]) if variant.startswith("dropout_") else 0.0
        )
        assert cfg.model.dropout == expected_dropout
        assert cfg.model.batchnorm == (variant in ("bn", "bn_no_dropout", "xavier"))
        assert cfg.model.activation == ("sigmoid" if variant == "sigmoid" else "relu")
        assert cfg.model.init == ("xavier" if variant == "xavier" else "default")
    else:
        assert model_name(cfg) == model and cfg.loss._target_.endswith("CrossEntropy")
        assert cfg.optim._target_ == "torch.optim.Adam" and cfg.data.val_fraction == 0.2
        assert (list(cfg.data.mean), list(cfg.data.std)) == ([0.0], [1.0])
        assert cfg.data.batch_size == (100 if variant in ("plain", "aug", "aug_erasing", "cosine") else 250)
        augment = {"aug_erasing": "mnist_affine_erasing", "plain": "none", "cosine": "none"}.get(variant)
        augment = augment or "mnist_affine"
        assert cfg.data.augment == compose_cfg([f"augment={augment}"]).data.augment
        assert cfg.trainer.log_every_n_steps == 1
        sched = cfg.sched.scheduler
        if variant.startswith("cosine"):
            assert sched.T_max == 1000 and cfg.sched.interval == "step"
        elif variant.startswith("cyclic"):
            assert (sched.base_lr, sched.step_size_up, sched.cycle_momentum) == (1e-4, 2500, False)
            assert (sched.mode, sched.max_lr) == (
                ("triangular", 1e-3) if variant == "cyclic" else ("triangular2", 1e-2)
            )
        elif variant.startswith("warm_restarts"):
            assert (sched.T_0, sched.T_mult) == ((250, 2) if variant == "warm_restarts" else (1000, 1))
        else:
            assert sched is None and cfg.optim.lr == 1e-2


# ResNet-18 steps are the slow ones: two of 4 images
SMALL_BATCHES = {"cifar100_resnet18": ["data.verify_checksums=false", "data.batch_size=4", "data.eval_batch_size=8",
                                       "trainer.limit_train_batches=2"]}  # fmt: skip


@pytest.mark.parametrize("experiment,variant,model", PAIRS)
def test_few_steps(experiment, variant, model, data_root, tmp_path):
    extra = SMALL_BATCHES.get(experiment, [])
    results = run(
        [*overrides(experiment, variant, model), f"data.root={data_root}", "augment=none",
         *tiny("trainer.limit_val_batches=1", *extra)],
        tmp_path,
    )  # fmt: skip
    assert results["status"] == "completed" and results["global_step"] == (2 if extra else 3)
    assert results["variant"] == variant
    assert 0.0 <= results["test_acc"] <= 1.0 and results["test_loss"] > 0
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    test = metrics.dropna(subset=["test/acc"]).iloc[-1]
    assert test["test/err"] == pytest.approx(1 - test["test/acc"], abs=1e-6)
    k = results["config"]["top_k"][0]  # top-5, lenet5_lecun's top-3
    assert test[f"test/err_top{k}"] == pytest.approx(1 - test[f"test/acc_top{k}"], abs=1e-6)
    if experiment in ("mnist_small_cnns", "lenet5_lecun"):
        assert "val/err" in metrics.columns  # the 20 % validation split; lenet5_lecun's test set
        if results["config"]["sched"]["interval"] == "step" and results["config"]["sched"]["scheduler"]:
            assert metrics["lr-Adam"].notna().sum() == 3  # the lr of every step


def test_dropout_one_stays_at_chance_in_training(data_root, tmp_path):
    """convnet_ablation's p = 1 row: fc2 sees zeros in training, so the training outputs are the same for all images."""
    results = run([*overrides("convnet_ablation", "dropout_1.0", None), f"data.root={data_root}", *tiny()], tmp_path)
    assert results["config"]["model"]["dropout"] == 1.0
    assert results["metrics"]["train/acc"] <= 0.5  # one class for every image


@pytest.mark.slow
def test_dotted_variant_names_sweep_on_the_command_line(data_root, tmp_path, monkeypatch, capsys):
    """``variant=dropout_0.25,dropout_1.0`` works as written in a real ``-m`` sweep (Hydra accepts the dot)."""
    args = ["experiment=convnet_ablation", "-m", "variant=dropout_0.25,dropout_1.0", f"hydra.sweep.dir={tmp_path}",
            f"data.root={data_root}", *tiny(), *QUIET]  # fmt: skip
    code, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    dirs = sorted(p.parent.name for p in tmp_path.glob("*/results.json"))
    assert len(dirs) == 2
    assert "variant=dropout_0.25" in dirs[0] and "variant=dropout_1.0" in dirs[1]
