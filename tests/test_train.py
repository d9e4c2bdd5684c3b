"""Training end to end through the real configs, DataModules and Trainer on tiny real-format data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from regnet.train import train
from tests.conftest import QUIET, compose_cfg, run_cli, tiny

# every regularizer trains LeNet in test_regularizers and every model takes a step in test_models; here the whole
# training path once per core model, with the regularizers that reach deepest into it (SVB projecting every step,
# the Jacobian penalty through ResNet's BatchNorm and shortcuts)
PAIRS = [("lenet", "svb"), ("resnet18", "jacobian"), ("resnet18", "svb"), ("simplenet", "l2")]


@pytest.mark.parametrize("model,reg", PAIRS)
def test_few_steps_of_the_core_models_with_the_core_regularizers(model, reg, data_root, tmp_path):
    overrides = [
        f"model={model}",
        f"reg={reg}",
        f"data.root={data_root}",
        "reg.svb.every=1" if (model, reg) == ("lenet", "svb") else None,
    ]
    data = "cifar100" if model == "resnet18" else "mnist"
    cfg = compose_cfg([o for o in overrides if o] + tiny("trainer.max_epochs=1", data=data), return_hydra_config=True)
    results = train(cfg, tmp_path)
    assert results["status"] == "completed"
    assert results["model"] == model and results["data"] == data and results["reg"] == [reg]
    assert results["global_step"] == 3
    assert 0.0 <= results["test_acc"] <= 1.0 and results["test_loss"] > 0
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "metrics.csv").is_file()
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["test_acc"] == results["test_acc"]
    if reg == "jacobian":
        assert results["metrics"]["train/jacobian"] > 0


def test_composed_regularizers_apply_both(data_root, tmp_path):
    cfg = compose_cfg(["reg=[l2,jacobian]", f"data.root={data_root}", *tiny()], return_hydra_config=True)
    results = train(cfg, tmp_path)
    assert results["reg"] == ["l2", "jacobian"]
    assert results["metrics"]["train/jacobian"] > 0
    assert results["config"]["reg"]["l2"]["weight_decay"] == 5e-4


def test_model_contract_and_pairing():
    cfg = compose_cfg(["model=resnet18"])
    assert cfg.data._target_.endswith("CIFAR100")
    model = instantiate(cfg.model)
    assert isinstance(model, torch.nn.Module)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
    cfg = compose_cfg(["model=resnet18", "data=mnist"])
    assert instantiate(cfg.model)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert compose_cfg([]).model._target_.endswith("LeNet")


def test_completed_run_is_skipped(data_root, tmp_path, caplog):
    cfg = compose_cfg([f"data.root={data_root}", *tiny()], return_hydra_config=True)
    with caplog.at_level("INFO", logger="lightning.pytorch"):
        first = train(cfg, tmp_path)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert not [r for r in caplog.records if "weights_only" in r.getMessage()]  # no line per checkpoint save
    again = train(compose_cfg([f"data.root={data_root}", *tiny()], return_hydra_config=True), tmp_path)
    assert again["wall_time_s"] == first["wall_time_s"]  # read back, not retrained


@pytest.mark.slow
def test_multirun_two_seeds(data_root, tmp_path, monkeypatch, capsys):
    """The README's sweep form, `-m` in the middle of the command line, two seeds → two results.json."""
    args = ["model=lenet", "reg=svb", "-m", "seed=0,1", f"hydra.sweep.dir={tmp_path}", f"data.root={data_root}"]
    code, err = run_cli([*args, *tiny(), *QUIET], monkeypatch, capsys)
    assert code == 0, err
    found = sorted(tmp_path.glob("*/results.json"))
    assert len(found) == 2
    assert all(p.parent.name.startswith("data.batch_size=16") and "reg=svb" in p.parent.name for p in found)
    seeds = [json.loads(p.read_text())["seed"] for p in found]
    assert seeds == [0, 1]


@pytest.mark.slow
def test_experiment_variants_compose_and_run(data_root, tmp_path):
    variants = ["no_reg", "no_reg_no_dropout", "l2", "jacobi", "jacobi_no_dropout", "svb"]
    for v in variants:
        cfg = compose_cfg(
            ["experiment=hoffman2019_mnist", f"variant={v}", f"data.root={data_root}", *tiny()],
            return_hydra_config=True,
        )
        assert cfg.trainer.max_epochs == 1 and cfg.task_name == "hoffman2019_mnist"
        results = train(cfg, tmp_path / v)
        assert results["variant"] == v
        assert results["config"]["model"]["dropout"] == (0.0 if v.endswith("no_dropout") else 0.5)
    full = compose_cfg(["experiment=hoffman2019_mnist"])
    assert full.trainer.max_epochs == 250 and full.data.batch_size == 100 and full.optim.lr == 0.1
    cifar = compose_cfg(["experiment=cifar100_resnet18", "variant=svb"])
    assert cifar.trainer.max_epochs == 50 and list(cifar.reg) == ["svb"] and cifar.model.stem == "imagenet"


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow
@pytest.mark.skipif(
    not (FASHION / "train-images-idx3-ubyte.gz").is_file(), reason="Debian dataset-fashion-mnist not installed"
)
def test_lenet_one_epoch_on_real_fashion_mnist(tmp_path):
    """Real data: one epoch of LeNet on Fashion-MNIST (60k images) reaches ≥ 80 % test accuracy; the analysis
    reloads the run where its data folder is absent (another working directory) from the Debian files."""
    cfg = compose_cfg(
        [
            "data=fashion_mnist",
            f"data.root={tmp_path / 'data'}",
            "trainer.max_epochs=1",
            "trainer.accelerator=cpu",
            "sched=none",
            "optim.lr=0.05",
        ],
        return_hydra_config=True,
    )
    results = train(cfg, tmp_path / "run")
    assert results["global_step"] == 600
    assert results["test_acc"] >= 0.80, results["test_acc"]
    from regnet.analysis import load_run

    _, dm, _ = load_run(tmp_path / "run", data_root=str(tmp_path / "elsewhere"))
    assert len(dm.splits["test"][0]) == 10_000


def test_top_k_metrics_are_the_configured_ones_below_the_number_of_classes():
    from regnet.metrics import accuracy_names
    from regnet.module import RegNetModule

    def names(top_k, num_classes=10):
        module = RegNetModule(torch.nn.Linear(2, num_classes), num_classes, top_k=top_k)
        return sorted(f"test/{name}" for name in accuracy_names(module.top_k))

    assert names([5]) == ["test/acc", "test/acc_top5", "test/err", "test/err_top5"]
    assert names([3, 10, 20]) == ["test/acc", "test/acc_top3", "test/err", "test/err_top3"]
    assert names([5], num_classes=3) == names([]) == ["test/acc", "test/err"]
    with pytest.raises(ValueError, match=r"top_k=\[0\] is invalid"):
        names([0])
