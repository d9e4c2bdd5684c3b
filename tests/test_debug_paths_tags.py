"""The Lightning-Hydra template's conveniences, on the real configs and Trainer: ``debug=`` presets, the ``paths``
config (keys and environment variables) and ``tags=[...]`` (results.json and every logger, read back with each
logger's own reader; never part of a run's directory name)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from regnet.train import train
from tests.conftest import CONF, QUIET, compose_cfg, run_cli
from tests.test_loggers import mlflow_runs, tensorboard_hparams, tensorboard_scalars, wandb_records
from tests.test_loggers import offline as offline  # the fixture: W&B offline, cwd in tmp

DEBUG = sorted(p.stem for p in (CONF / "debug").glob("*.yaml"))
SMALL = ["data=mnist", "data.batch_size=16", "data.eval_batch_size=64", "trainer.accelerator=cpu", *QUIET]


def train_losses(run_dir: Path) -> list[float]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]


def test_every_debug_preset_is_tested():
    assert DEBUG == ["fast_dev_run", "limit", "overfit", "profiler"]


@pytest.mark.parametrize("preset", [pytest.param(p, marks=pytest.mark.slow) if p == "overfit" else p for p in DEBUG])
def test_each_debug_preset_composes_and_runs(preset, data_root, tmp_path):
    """Each preset alone (no step limits from the test) makes the default 250-epoch config a run of seconds, in
    the debug folder, retrained every time; and does what its name says."""
    extra = ["optim.lr=0.01"] if preset == "overfit" else []  # lr 0.1 cannot memorise 48 images of noise
    overrides = [f"debug={preset}", f"data.root={data_root}", *SMALL, *extra]
    cfg = compose_cfg(overrides, return_hydra_config=True)
    assert cfg.task_name == "debug" and cfg.force is True
    run_dir = tmp_path / "run"
    results = train(cfg, run_dir)
    assert results["status"] == "completed"
    steps_per_epoch = 256 // 16  # the tiny MNIST: 256 training images
    if preset == "fast_dev_run":
        assert results["global_step"] == 1  # one batch of each stage
        again = train(compose_cfg(overrides, return_hydra_config=True), run_dir)  # force: trained again, not skipped
        assert again["status"] == "completed" and again["wall_time_s"] != results["wall_time_s"]
    elif preset == "limit":
        assert (results["epochs"], results["global_step"]) == (2, 2 * 10)
    elif preset == "profiler":
        assert results["global_step"] == steps_per_epoch  # one epoch, fewer than its 50-batch limit
        report = (run_dir / "fit-profile.txt").read_text()
        assert "FIT Profiler Report" in report and "training_step" in report
        assert (run_dir / "test-profile.txt").is_file()
    else:  # overfit: the same 3 batches every epoch, learnt by heart
        assert results["global_step"] == 30 * 3
        losses = train_losses(run_dir)
        assert len(losses) == 30 and losses[-1] < 0.5 * losses[0]
        assert results["metrics"]["train/acc"] > 0.9  # on 48 images of noise: memorised, not learnt


def test_a_debug_preset_refines_a_study_and_keeps_it_out_of_the_study_folder():
    cfg = compose_cfg(["experiment=hoffman2019_mnist", "variant=jacobi", "debug=limit"])
    assert cfg.task_name == "debug" and cfg.force is True  # not outputs/hoffman2019_mnist/, which analysis reads
    assert cfg.trainer.limit_train_batches == 10 and cfg.trainer.max_epochs == 2
    assert cfg.variant == "jacobi" and "jacobian" in cfg.reg and cfg.data._target_.endswith("MNIST")


def test_paths_default_to_where_things_went_before(monkeypatch):
    for var in ("REGNET_DATA", "REGNET_OUTPUTS", "REGNET_LOGS"):
        monkeypatch.delenv(var, raising=False)
    cfg = compose_cfg(["logger=[csv,mlflow]"], return_hydra_config=True)
    assert (cfg.paths.data, cfg.paths.outputs, cfg.paths.logs) == ("./data", "outputs", "outputs")
    assert cfg.data.root == "./data" and cfg.logger.mlflow.save_dir == "outputs/mlruns"
    hydra = OmegaConf.to_container(cfg.hydra, resolve=False)
    assert hydra["run"]["dir"].startswith("${paths.outputs}/${task_name}/")
    assert hydra["sweep"]["dir"] == "${paths.outputs}/${task_name}"
    monkeypatch.setenv("REGNET_DATA", "/d")
    monkeypatch.setenv("REGNET_OUTPUTS", "/o")
    cfg = compose_cfg(["logger=[csv,mlflow]"])
    assert (cfg.data.root, cfg.paths.logs, cfg.logger.mlflow.save_dir) == ("/d", "/o", "/o/mlruns")  # logs follow
    cfg = compose_cfg(["logger=[csv,mlflow]", "paths.data=/k", "paths.logs=/l"])  # a key beats the variable
    assert (cfg.data.root, cfg.paths.outputs, cfg.logger.mlflow.save_dir) == ("/k", "/o", "/l/mlruns")


def test_paths_and_tags_move_a_run_but_keep_its_name(data_root, offline, monkeypatch, capsys):
    """The same run, written where $REGNET_OUTPUTS / paths.outputs= say, MLflow's store where $REGNET_LOGS says:
    its directory name is the same as without them, and tags=[...] stay out of it too."""
    args = [*SMALL, "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_test_batches=1"]
    name = ",".join(sorted(a for a in args if not a.startswith("callbacks.") and a != "trainer.accelerator=cpu"))
    monkeypatch.setenv("REGNET_DATA", str(data_root))
    monkeypatch.setenv("REGNET_OUTPUTS", str(offline / "env_out"))
    monkeypatch.setenv("REGNET_LOGS", str(offline / "env_logs"))
    code, err = run_cli([*args, "logger=[csv,mlflow]", "tags=[ablation,v2]"], monkeypatch, capsys)
    assert code == 0, err
    results = json.loads((offline / "env_out" / "train" / name / "results.json").read_text())
    assert results["status"] == "completed" and results["tags"] == ["ablation", "v2"]
    assert (offline / "env_logs" / "mlruns").is_dir() and not (offline / "outputs").exists()

    code, err = run_cli([*args, f"paths.outputs={offline / 'key_out'}"], monkeypatch, capsys)
    assert code == 0, err
    assert (offline / "key_out" / "train" / name / "results.json").is_file()


def test_tags_reach_results_and_every_logger(data_root, offline):
    """tags=[ablation,v2]: results.json; CSV's hparams.yaml; TensorBoard's hparams; the W&B run's tags; MLflow
    run tags — each read back with its own reader."""
    run_dir = offline / "run"
    overrides = [f"data.root={data_root}", *SMALL, "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                 "trainer.limit_test_batches=1", "logger=[csv,tensorboard,wandb,mlflow]",
                 "tags=[ablation,v2]"]  # fmt: skip
    results = train(compose_cfg(overrides, return_hydra_config=True), run_dir)
    assert results["tags"] == ["ablation", "v2"] and results["config"]["tags"] == ["ablation", "v2"]
    assert yaml.safe_load((run_dir / "hparams.yaml").read_text()) == {"tags": ["ablation", "v2"]}
    assert tensorboard_hparams(tensorboard_scalars(run_dir / "tensorboard"))["tags"] == "['ablation', 'v2']"
    wandb_file = next(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    (run_record,) = [r.run for r in wandb_records(wandb_file) if r.WhichOneof("record_type") == "run"]
    assert list(run_record.tags) == ["ablation", "v2"]
    _, (run,) = mlflow_runs(offline, "train")
    assert run.data.tags["ablation"] == "true" and run.data.tags["v2"] == "true"


def test_no_tags_writes_no_hparams_file_and_records_an_empty_list(data_root, tmp_path):
    overrides = [f"data.root={data_root}", *SMALL, "trainer.max_epochs=1", "trainer.limit_train_batches=1",
                 "trainer.limit_test_batches=1"]  # fmt: skip
    results = train(compose_cfg(overrides, return_hydra_config=True), tmp_path)
    assert results["tags"] == [] and not (tmp_path / "hparams.yaml").exists()
