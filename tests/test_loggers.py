"""TensorBoard, W&B (offline) and MLflow (file store): each run logs its epochs, its resolved config and its test
metrics, read back with each library's own reader; a resumed run continues the same logger runs, a fresh one
starts new ones."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest
from lightning.pytorch import loggers as pl_loggers

from regnet.lifecycle import TrainingFailed
from regnet.loggers.resume import LOGGER_RUNS
from regnet.train import train
from tests.conftest import compose_cfg, tiny

ALL = "logger=[csv,tensorboard,wandb,mlflow]"


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """W&B offline, its caches and settings in tmp; the working directory (outputs/mlruns) in tmp."""
    for var, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off",
                       "WANDB_CONFIG_DIR": tmp_path / "wandb-config", "WANDB_CACHE_DIR": tmp_path / "wandb-cache",
                       "WANDB_DATA_DIR": tmp_path / "wandb-data"}.items():  # fmt: skip
        monkeypatch.setenv(var, str(value))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- readers: each library's own ------------------------------------------------------------------------
def tensorboard_scalars(log_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def tensorboard_hparams(acc) -> dict:
    from tensorboard.plugins.hparams import metadata

    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
    info = metadata.parse_session_start_info_plugin_data(content)
    return {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}


def wandb_records(path: Path):
    """The records of a ``.wandb`` file (W&B's protobuf ``Record`` messages in leveldb-log framing)."""
    from wandb.proto import wandb_internal_pb2

    data, pos, block, chunk = path.read_bytes(), 7, 32768, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            pos += block - pos % block
            continue
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            chunk = b""
            yield record


def wandb_ended(run_dir: Path, timeout: float = 60.0) -> dict:
    """:func:`wandb_run` once its exit record is in the file: W&B's service process writes the offline run file,
    and on a busy machine it may do so a moment after ``wandb.finish`` has returned."""
    deadline = time.monotonic() + timeout
    while (run := wandb_run(run_dir))["exit"] is None and time.monotonic() < deadline:
        time.sleep(0.2)
    return run


def wandb_run(run_dir: Path, attempt: int = -1) -> dict:
    """One offline W&B run directory (the newest, or the attempt-th by start time): run record, config, history
    rows, summary, media files."""
    offline = sorted((run_dir / "wandb").glob("offline-run-*"))[attempt]
    run = {
        "id": None,
        "project": None,
        "config": {},
        "history": [],
        "summary": {},
        "exit": None,
        "media": sorted(p.name for p in offline.rglob("*.png")),
    }
    for record in wandb_records(next(offline.glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["id"], run["project"] = record.run.run_id, record.run.project
            run["config"].update({u.key: json.loads(u.value_json) for u in record.run.config.update})
        elif kind == "config":
            run["config"].update({u.key: json.loads(u.value_json) for u in record.config.update})
        elif kind == "history":
            run["history"].append(
                {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.history.item}
            )
        elif kind == "summary":
            run["summary"].update(
                {"/".join(u.nested_key) or u.key: json.loads(u.value_json) for u in record.summary.update}
            )
        elif kind == "exit":
            run["exit"] = record.exit.exit_code
    return run


def mlflow_runs(tmp_path: Path, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(tmp_path / "outputs" / "mlruns").resolve().as_uri())
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


# --- tests ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "choice, cls",
    [
        ("tensorboard", pl_loggers.TensorBoardLogger),
        ("wandb", pl_loggers.WandbLogger),
        ("mlflow", pl_loggers.MLFlowLogger),
        ("csv", pl_loggers.CSVLogger),
    ],
)
def test_each_logger_config_is_the_lightning_logger_of_that_name(choice, cls, offline):
    from hydra.utils import instantiate

    from regnet.train import bind_run_dir

    cfg = compose_cfg([f"logger=[csv,{choice}]"], return_hydra_config=True)
    bind_run_dir(cfg, offline / "run")
    assert set(cfg.logger) == {"csv", choice}
    assert isinstance(instantiate(cfg.logger[choice]), cls)


def test_lenet5_lecun_logs_epochs_config_and_test_metrics_to_every_logger(data_root, offline):
    """``experiment=lenet5_lecun logger=wandb`` logs what the study logged to W&B: its config; loss, top-1 and
    top-3 error per epoch on the training set and on the test set (the study's "validation"); the learning rate;
    the test metrics, the confusion matrix and the four prediction galleries. TensorBoard and MLflow the same."""
    run_dir = offline / "run"
    cfg = compose_cfg(
        [f"data.root={data_root}", "experiment=lenet5_lecun", ALL, *tiny("trainer.max_epochs=2")],
        return_hydra_config=True,
    )
    results = train(cfg, run_dir)
    test_acc, epochs = results["test_acc"], 2
    assert {"val/err", "val/err_top3", "test/err_top3"} <= set(results["metrics"])  # val: the test set, per epoch
    assert "test/err_top5" not in results["metrics"]

    tb = tensorboard_scalars(run_dir / "tensorboard")
    assert len(tb.Scalars("train/loss")) == len(tb.Scalars("train/err_top3")) == len(tb.Scalars("val/err")) == epochs
    assert [e.value for e in tb.Scalars("test/acc")] == [pytest.approx(test_acc)]
    hp = tensorboard_hparams(tb)
    assert hp["optim/lr"] == pytest.approx(1e-3) and hp["sched/scheduler/gamma"] == pytest.approx(0.9)
    assert {"test/confusion_matrix", "test/predictions"} <= set(tb.Tags()["images"])

    wb = wandb_ended(run_dir)
    assert wb["project"] == "lenet5_lecun" and wb["exit"] == 0
    assert wb["config"]["optim"]["lr"] == 1e-3 and wb["config"]["data"]["batch_size"] == 16
    train_rows = [row for row in wb["history"] if "train/loss" in row]
    val_rows = [row for row in wb["history"] if "val/loss" in row]
    assert len(train_rows) == epochs and all("train/err" in r and "train/err_top3" in r for r in train_rows)
    assert len(val_rows) == epochs and all("val/err" in r and "val/err_top3" in r for r in val_rows)
    assert sum("lr-Adam" in row for row in wb["history"]) >= epochs
    assert wb["summary"]["test/acc"] == pytest.approx(test_acc) and "test/err_top3" in wb["summary"]
    assert len(wb["media"]) == 2, "the confusion matrix and the prediction galleries"

    client, runs = mlflow_runs(offline, "lenet5_lecun")
    (run,) = runs
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == epochs
    assert len(client.get_metric_history(run.info.run_id, "val/err_top3")) == epochs
    assert run.data.metrics["test/acc"] == pytest.approx(test_acc)
    assert run.data.params["optim/lr"] == "0.001" and run.data.params["loss/_target_"].endswith("BCEOneHot")
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert artifacts == ["confusion_matrix.png", "predictions.png"]
    assert json.loads((run_dir / LOGGER_RUNS).read_text()) == {"wandb": wb["id"], "mlflow": run.info.run_id}


class FailInThirdEpoch:
    """A callback that fails the run as its third epoch starts."""

    def __new__(cls):
        import lightning as L

        class _Fail(L.Callback):
            def on_train_epoch_start(self, trainer, pl_module):
                if trainer.current_epoch == 2:
                    raise RuntimeError("interrupted")

        return _Fail()


def test_resumed_run_continues_its_logger_runs_and_a_fresh_one_starts_new_ones(data_root, offline):
    run_dir = offline / "run"
    args = [
        f"data.root={data_root}",
        "logger=[tensorboard,wandb,mlflow]",
        "callbacks.checkpoint=null",
        "callbacks.checkpoint_steps.every_n_train_steps=4",
        *tiny("trainer.max_epochs=3"),
    ]  # 3 steps an epoch, no epoch-end checkpoints: the failure's last checkpoint is inside the second epoch, which
    # the interrupted attempt logged and the resumed one logs again
    fail = "+callbacks.fail._target_=tests.test_loggers.FailInThirdEpoch"
    with pytest.raises(TrainingFailed):
        train(compose_cfg([*args, fail], return_hydra_config=True), run_dir)
    ids = json.loads((run_dir / LOGGER_RUNS).read_text())
    client, (failed,) = mlflow_runs(offline, "train")
    assert failed.info.status == "FAILED" and wandb_ended(run_dir)["exit"] == 1

    time.sleep(1.05 - time.time() % 1)  # wandb names an offline attempt's directory by the second it started
    results = train(compose_cfg(args, return_hydra_config=True), run_dir)  # resumes from the step-4 checkpoint
    assert results["status"] == "completed" and results["resumed_from_step"] == 4
    assert json.loads((run_dir / LOGGER_RUNS).read_text()) == ids
    _, (run,) = mlflow_runs(offline, "train")  # the same MLflow run, finished
    assert run.info.run_id == ids["mlflow"] and run.info.status == "FINISHED"
    epoch_steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert len(epoch_steps) == 3 and epoch_steps == sorted(set(epoch_steps))  # each epoch once
    wb = wandb_ended(run_dir)
    assert wb["id"] == ids["wandb"] and wb["exit"] == 0  # offline, each attempt is a directory with the run's id
    assert len(list((run_dir / "wandb").glob(f"offline-run-*-{ids['wandb']}"))) == 2
    tb = tensorboard_scalars(run_dir / "tensorboard")
    assert [e.step for e in tb.Scalars("train/loss")] == epoch_steps  # one directory, each epoch once

    train(compose_cfg([*args, "force=true"], return_hydra_config=True), run_dir)  # from scratch: new logger runs
    new = json.loads((run_dir / LOGGER_RUNS).read_text())
    assert new["wandb"] != ids["wandb"] and new["mlflow"] != ids["mlflow"]
    assert len(mlflow_runs(offline, "train")[1]) == 2
    assert [e.step for e in tensorboard_scalars(run_dir / "tensorboard").Scalars("train/loss")] == epoch_steps
