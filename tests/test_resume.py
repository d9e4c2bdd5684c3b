"""Never lose a run: a run killed with SIGKILL anywhere (mid-epoch, right after an epoch end, during validation, a
checkpoint write, the test or the final write) resumes from checkpoints/last.ckpt when the same command is run again,
and ends with exactly the metrics of an uninterrupted run (CPU, deterministic)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import lightning as L
import pandas as pd
import pytest
import torch

from regnet.lifecycle import TrainingFailed
from regnet.loggers.csv import CSVLogger
from regnet.train import train
from tests.conftest import REPO, compose_cfg, tiny

# One small run for every kill point: 3 epochs of 12 batches of 8 (limit_train_batches, as in most quick studies; 64
# images held out for validation), a step checkpoint every 6 steps, so steps 12, 24 and 36 end an epoch; a
# regularizer that draws random numbers.
STEPS_PER_EPOCH, EPOCHS, EVERY = 12, 3, 6
KILL_ARGS = [
    f"trainer.max_epochs={EPOCHS}",
    f"trainer.limit_train_batches={STEPS_PER_EPOCH}",
    "data.val_fraction=0.25",
    "data.batch_size=8",
    "data.eval_batch_size=32",
    "trainer.limit_test_batches=2",
    f"callbacks.checkpoint_steps.every_n_train_steps={EVERY}",
    "reg=jacobian",
    "trainer.accelerator=cpu",
    "callbacks.progress_bar.refresh_rate=0",
]
TIMING = "train/images_per_s"  # wall-clock, differs between any two runs


def _env(data_root):
    return {**os.environ, "REGNET_DATA": str(data_root), "PYTHONPATH": str(REPO)}


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAt(L.Callback):
    """SIGKILLs its own process at one point of the run (``at``), as a pre-emption or the OOM killer would: no
    exception, no ``finally``, no Lightning teardown. Added to the killed run as ``+callbacks.kill``."""

    def __init__(self, at: str):
        self.at = at

    def setup(self, trainer, pl_module, stage):
        if self.at == "checkpoint_write":
            # $TMPDIR on another filesystem than the run (node-local /tmp, shared outputs): a rename from it into
            # checkpoints/ fails with EXDEV and shutil.move copies instead; the kill lands halfway through a copy
            rename, copyfile = os.rename, shutil.copyfile

            def cross_device(src, dst, *args, **kwargs):
                if Path(dst).parent.name == "checkpoints" and Path(src).parent != Path(dst).parent:
                    raise OSError(errno.EXDEV, "Invalid cross-device link", str(src))
                return rename(src, dst, *args, **kwargs)

            def killed_halfway(src, dst, *args, **kwargs):
                if Path(dst).parent.name == "checkpoints" and trainer.global_step >= 2 * STEPS_PER_EPOCH:
                    data = Path(src).read_bytes()
                    Path(dst).write_bytes(data[: len(data) // 2])
                    _die()
                return copyfile(src, dst, *args, **kwargs)

            os.rename, shutil.copyfile = cross_device, killed_halfway
        if self.at == "final_write":
            replace = os.replace

            def killed_before_rename(src, dst, *args, **kwargs):
                if Path(dst).name == "results.json":
                    _die()
                return replace(src, dst, *args, **kwargs)

            os.replace = killed_before_rename

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.at == "after_epoch_end" and trainer.current_epoch == 1 and batch_idx == 2:
            _die()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.at == "mid_epoch" and trainer.current_epoch == 1 and batch_idx == 8:
            _die()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if self.at == "validation" and trainer.current_epoch == 1:
            _die()

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self.at == "test" and batch_idx == 1:
            _die()


@pytest.fixture(scope="module")
def one_thread():
    """A killed run is a forked child of this process (no second interpreter start, ~10 s of CPU each). After fork,
    only one OpenMP thread is safe (GNU OpenMP's pool does not survive it); the reference and the reruns use one
    too, so all of them compute bit for bit alike."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _kill_args(data_root):
    return [f"data.root={data_root}", *KILL_ARGS]


@pytest.fixture(scope="module")
def reference(data_root, tmp_path_factory, one_thread):
    """The same run, never interrupted."""
    run_dir = tmp_path_factory.mktemp("reference")
    train(compose_cfg(_kill_args(data_root), return_hydra_config=True), run_dir)
    return run_dir


def _train_killed(args, run_dir, at):
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        try:
            train(
                compose_cfg(
                    [*args, "+callbacks.kill._target_=tests.test_resume.KillAt", f"+callbacks.kill.at={at}"],
                    return_hydra_config=True,
                ),
                run_dir,
            )
        finally:
            os._exit(3)  # KillAt did not fire
    deadline = time.monotonic() + 300
    while (status := os.waitpid(pid, os.WNOHANG)[1]) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if status == 0:  # a hung child must not hang the suite
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail(f"the run to be killed at {at} hung")
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"the run was not killed at {at}"


def _compared(results):
    return {k: results[k] for k in ("status", "epochs", "global_step", "test_acc", "test_loss", "val_acc")} | {
        "metrics": {k: v for k, v in results["metrics"].items() if k != TIMING}
    }


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="the killed run is a forked child")
@pytest.mark.parametrize(
    "at", ["mid_epoch", "after_epoch_end", "validation", "checkpoint_write", "test", "final_write"]
)
def test_sigkill_then_rerun_gives_the_uninterrupted_results(at, data_root, tmp_path, reference):
    """Killed with SIGKILL at ``at``, then the same command again: the run resumes from checkpoints/last.ckpt and ends
    with exactly the results.json metrics and metrics.csv of the run that never stopped."""
    run_dir = tmp_path / "run"
    _train_killed(_kill_args(data_root), run_dir, at)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and not (run_dir / "results.json").exists()

    got = train(compose_cfg(_kill_args(data_root), return_hydra_config=True), run_dir)
    want = json.loads((reference / "results.json").read_text())
    assert got["resumed_from_step"] is not None, "the rerun started from scratch: the kill left no readable checkpoint"
    assert want["resumed_from_step"] is None and want["global_step"] == EPOCHS * STEPS_PER_EPOCH
    assert {"train/acc", "train/jacobian", "val/acc", "test/acc"} <= set(want["metrics"])
    assert _compared(json.loads((run_dir / "results.json").read_text())) == _compared(got) == _compared(want)
    assert not list(run_dir.rglob("*.tmp")), "a temporary file of a write the kill cut short was left behind"
    # the learning curves too: the epochs before the kill are kept, the steps trained again are not doubled
    timing = [c for c in pd.read_csv(reference / "metrics.csv").columns if "images_per_s" in c]
    want_log, got_log = (pd.read_csv(d / "metrics.csv").drop(columns=timing) for d in (reference, run_dir))
    assert set(range(EPOCHS)) <= set(want_log["epoch"].dropna())
    pd.testing.assert_frame_equal(got_log, want_log)
    # the resumed epoch's throughput is timed from the resume (Lightning skips on_train_epoch_start there)
    rates = pd.read_csv(run_dir / "metrics.csv")[TIMING].dropna()
    assert rates.min() > pd.read_csv(reference / "metrics.csv")[TIMING].min() / 100
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]  # no last-v1, no temp file


class EpochStartProbe(L.Callback):
    """Records, at the start of every epoch after the first, the global step of checkpoints/last.ckpt on disk."""

    steps: ClassVar[list[int | None]] = []

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch > 0:
            last = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
            step = torch.load(last, weights_only=False)["global_step"] if last.is_file() else None
            EpochStartProbe.steps.append(step)


def test_a_checkpoint_is_written_at_every_epoch_end(data_root, tmp_path):
    """README: checkpoints go to checkpoints/last.ckpt at every epoch end (Lightning 2.6's
    ``ModelCheckpoint(save_top_k=0, save_last=True)`` saved none there), and nowhere else."""
    EpochStartProbe.steps = []
    args = [
        f"data.root={data_root}",
        *tiny(),
        "trainer.max_epochs=3",
        "+callbacks.probe._target_=tests.test_resume.EpochStartProbe",
    ]
    result = train(compose_cfg(args, return_hydra_config=True), tmp_path)
    assert result["global_step"] == 9 and EpochStartProbe.steps == [3, 6]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt"]
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 9


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(data_root, tmp_path, monkeypatch):
    """A checkpoint write that fails (a full disk at the rename) fails the run, and leaves the previous
    checkpoint whole where the next attempt resumes from it, and no partial file."""
    replace = os.replace

    def disk_full(src, dst, *args, **kwargs):
        if Path(dst).name == "last.ckpt" and torch.load(src, weights_only=False)["global_step"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", disk_full)
    cfg = compose_cfg([f"data.root={data_root}", *tiny(), "trainer.max_epochs=2"], return_hydra_config=True)
    with pytest.raises(TrainingFailed, match="No space left on device"):
        train(cfg, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "failed"
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["last.ckpt"]
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3


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
    lightning = [
        "logger.csv._target_=lightning.pytorch.loggers.CSVLogger",
        "~logger.csv.tags",
    ]  # Lightning's takes no tags
    train(compose_cfg(args + lightning, return_hydra_config=True), tmp_path / "lightning")
    ours, theirs = (pd.read_csv(tmp_path / d / "metrics.csv").drop(columns=TIMING) for d in ("ours", "lightning"))
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
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(run / ".regnet-run.lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        cmd = [
            sys.executable,
            "-m",
            "regnet.train",
            "trainer.accelerator=cpu",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=3",
            "trainer.limit_test_batches=1",
            f"hydra.run.dir={run}",
        ]
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
