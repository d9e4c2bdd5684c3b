"""Never lose a run: a run killed with SIGKILL mid-epoch resumes from checkpoints/last.ckpt when the same
command is run again, and ends with exactly the metrics of an uninterrupted run (CPU, deterministic)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from regnet.loggers.csv import CSVLogger
from regnet.train import train
from tests.conftest import REPO, compose_cfg, tiny

ARGS = ["trainer.max_epochs=6", "trainer.accelerator=cpu", "data.batch_size=16", "data.eval_batch_size=64",
        "trainer.limit_test_batches=1", "callbacks.checkpoint_steps.every_n_train_steps=7", "reg=jacobian"]


def _cmd(run_dir):
    return [sys.executable, "-m", "regnet.train", *ARGS, f"hydra.run.dir={run_dir}"]


def _env(data_root):
    return {**os.environ, "REGNET_DATA": str(data_root), "PYTHONPATH": str(REPO)}


@pytest.mark.slow
def test_sigkill_mid_epoch_then_rerun_gives_identical_results(data_root, tmp_path):
    reference = tmp_path / "reference"
    out = subprocess.run(_cmd(reference), cwd=REPO, env=_env(data_root), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(killed), cwd=REPO, env=_env(data_root), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)  # a few more steps: the kill lands somewhere in the middle of training
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists() and not (killed / "results.json").exists(), "the kill came too late to test resuming"

    out = subprocess.run(_cmd(killed), cwd=REPO, env=_env(data_root), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming from" in out.stdout + out.stderr
    want = json.loads((reference / "results.json").read_text())
    got = json.loads((killed / "results.json").read_text())
    assert got["global_step"] == want["global_step"] == 6 * 16
    assert want["resumed_from_step"] is None and 0 < got["resumed_from_step"] < 6 * 16
    assert got["test_loss"] == want["test_loss"] and got["test_acc"] == want["test_acc"]
    # the learning curves too: the epochs before the kill are kept, the steps trained again are not doubled
    timing = [c for c in pd.read_csv(reference / "metrics.csv").columns if "images_per_s" in c]
    want_log, got_log = (pd.read_csv(d / "metrics.csv").drop(columns=timing) for d in (reference, killed))
    assert set(range(6)) <= set(want_log["epoch"].dropna())
    pd.testing.assert_frame_equal(got_log, want_log)
    # the resumed epoch's throughput is timed from the resume (Lightning skips on_train_epoch_start there)
    rates = pd.read_csv(killed / "metrics.csv")["train/images_per_s"].dropna()
    assert rates.min() > pd.read_csv(reference / "metrics.csv")["train/images_per_s"].min() / 100


def test_same_seed_twice_identical_metrics(data_root, tmp_path):
    runs = []
    for name in ("a", "b"):
        cfg = compose_cfg([f"data.root={data_root}", "reg=jacobian", *tiny()], return_hydra_config=True)
        runs.append(train(cfg, tmp_path / name))
    timing = {"train/images_per_s"}
    a, b = ({k: v for k, v in r["metrics"].items() if k not in timing} for r in runs)
    assert a == b and "train/jacobian" in a
    assert runs[0]["config"]["trainer"]["deterministic"] is True


def test_completed_run_not_retrained_unless_forced(data_root, tmp_path):
    cfg = compose_cfg([f"data.root={data_root}", *tiny()], return_hydra_config=True)
    first = train(cfg, tmp_path)
    again = train(compose_cfg([f"data.root={data_root}", *tiny()], return_hydra_config=True), tmp_path)
    assert again == json.loads((tmp_path / "results.json").read_text()) and again["wall_time_s"] == first["wall_time_s"]
    forced = train(compose_cfg([f"data.root={data_root}", "force=true", *tiny()], return_hydra_config=True), tmp_path)
    assert forced["wall_time_s"] != first["wall_time_s"]


def test_unreadable_checkpoint_is_set_aside(data_root, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 truncated")
    cfg = compose_cfg([f"data.root={data_root}", *tiny()], return_hydra_config=True)
    assert train(cfg, tmp_path)["status"] == "completed"
    assert (tmp_path / "checkpoints" / "last.ckpt.corrupt").exists()


def test_metrics_log_has_lightnings_rows_and_a_fresh_start_replaces_it(data_root, tmp_path):
    args = [f"data.root={data_root}", "reg=jacobian", "trainer.log_every_n_steps=1", *tiny()]
    train(compose_cfg(args, return_hydra_config=True), tmp_path / "ours")
    lightning = ["logger.csv._target_=lightning.pytorch.loggers.CSVLogger"]
    train(compose_cfg(args + lightning, return_hydra_config=True), tmp_path / "lightning")
    ours, theirs = (pd.read_csv(tmp_path / d / "metrics.csv").drop(columns="train/images_per_s") for d in ("ours", "lightning"))
    assert len(ours) > 3 and ours["lr-SGD"].notna().sum() > 1  # per-step rows as well as per-epoch ones
    pd.testing.assert_frame_equal(ours, theirs)  # merging repeated rows dropped none of an uninterrupted run
    train(compose_cfg(args + ["force=true"], return_hydra_config=True), tmp_path / "ours")  # retrained from scratch
    assert len(pd.read_csv(tmp_path / "ours" / "metrics.csv")) == len(ours)  # a fresh file, not appended to


def test_rows_logged_by_callbacks_are_on_disk_at_once(tmp_path):
    """LearningRateMonitor calls ``logger.log_metrics`` directly; Lightning's logger kept such rows in memory
    until the next epoch's metrics, so a kill in between lost them for good when the run resumed from a later
    checkpoint."""
    logger = CSVLogger(save_dir=tmp_path, name="", version="")
    logger.log_metrics({"epoch": 0, "train/loss": 1.5}, step=15)
    logger.log_metrics({"lr-SGD": 0.01}, step=49)  # a new column: the header is rewritten
    rows = pd.read_csv(tmp_path / "metrics.csv")
    assert list(rows["step"]) == [15, 49] and rows["lr-SGD"].iloc[1] == 0.01


def test_new_column_rewrite_never_leaves_a_half_written_log(tmp_path, monkeypatch):
    logger = CSVLogger(save_dir=tmp_path, name="", version="")
    logger.log_metrics({"train/loss": 1.5}, step=15)
    before = (tmp_path / "metrics.csv").read_text()

    def killed(*args):
        raise KeyboardInterrupt  # stands for the process dying before the rewritten file is in place

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        logger.log_metrics({"lr-SGD": 0.01}, step=49)
    assert (tmp_path / "metrics.csv").read_text() == before
    assert [f.name for f in tmp_path.iterdir()] == ["metrics.csv"]  # no temporary file left behind


def test_epoch_end_checkpoint_holds_reset_training_counts(data_root, tmp_path):
    """The epoch's metrics are logged and reset before the epoch-end checkpoint is written, so a run resumed from
    it starts the next epoch from zero (a mid-epoch checkpoint carries the counts: the SIGKILL test above)."""
    import torch

    cfg = compose_cfg([f"data.root={data_root}", "reg=l1", *tiny()], return_hydra_config=True)
    result = train(cfg, tmp_path)
    assert {"train/acc", "train/loss", "train/data_loss", "train/l1", "test/loss", "test/acc"} <= set(result["metrics"])
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    counts = {k: v for k, v in state.items() if k.startswith(("metrics.train_metrics.", "means.train_means."))}
    assert counts and all(not v.any() for v in counts.values())
    assert not any(k.startswith(("metrics.val_metrics.", "means.test_means.")) for k in state)  # only training's travel


HOLD_LOCK = """
import fcntl, sys, time
f = open(sys.argv[1], "a+")
fcntl.flock(f, fcntl.LOCK_EX)
f.truncate(0); f.write("4242\\n"); f.flush()
print("locked", flush=True)
time.sleep(120)
"""


@pytest.mark.slow
def test_a_run_another_process_is_training_is_skipped_until_that_process_dies(data_root, tmp_path):
    """The same command started twice (or a requeued SLURM job while the first still runs) must not train one
    run in two processes; a holder killed with SIGKILL releases the run (the kernel drops its flock)."""
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run / ".regnet-run.lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        cmd = [sys.executable, "-m", "regnet.train", "trainer.accelerator=cpu", "trainer.max_epochs=1",
               "trainer.limit_train_batches=3", "trainer.limit_test_batches=1", f"hydra.run.dir={run}"]
        out = subprocess.run(cmd, cwd=REPO, env=_env(data_root), capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "is being trained by another process (pid 4242); skipping it" in out.stdout + out.stderr
        assert not (run / "results.json").exists() and not (run / "checkpoints").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    out = subprocess.run(cmd, cwd=REPO, env=_env(data_root), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((run / "results.json").read_text())["status"] == "completed"
