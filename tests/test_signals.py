"""One contract for a signal (regnet/signals.py): SIGTERM or SIGINT to ``python -m regnet.train`` mid-epoch writes a
checkpoint at the step it is on, records ``"status": "interrupted"`` and exits 128 + signal; a second signal during
that write leaves the checkpoint whole; the same command resumes from that step (0 steps redone) and ends exactly
as the run that never stopped (CPU). The signals are real, sent to a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch

from regnet.loggers.resume import LOGGER_RUNS
from regnet.signals import CheckpointAtSignal, Interrupted, descendants
from regnet.stacked.train import stack_dir_for
from regnet.train import train
from tests.conftest import QUIET, REPO, compose_cfg, tiny
from tests.test_loggers import mlflow_runs, offline, tensorboard_scalars, wandb_ended  # noqa: F401
from tests.test_resume import STEPS_PER_EPOCH, TIMING, _compared, _kill_args, one_thread, reference  # noqa: F401

AT_BATCH = 4  # of epoch 1: the signal arrives after step 12 + 5 = 17; the checkpoints on disk are at 12 (and 6)
SIGNAL_STEP = STEPS_PER_EPOCH + AT_BATCH + 1


def _guard(trainer):
    return next(cb.guard for cb in trainer.callbacks if isinstance(cb, CheckpointAtSignal))


class WaitForSignal(L.Callback):
    """In the signalled run (``+callbacks.wait``): at epoch 1, batch ``AT_BATCH`` it touches ``ready`` and waits
    (60 s at most) for the signal the test sends; with ``second`` it sends itself the same signal again while the
    checkpoint is being written."""

    def __init__(self, ready: str, second: bool = False):
        self.ready, self.second = Path(ready), second

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == AT_BATCH and not self.ready.exists():  # once per test
            self.ready.touch()
            deadline = time.monotonic() + 60
            while _guard(trainer).received is None and time.monotonic() < deadline:
                time.sleep(0.02)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        if self.second and (signum := _guard(trainer).received) is not None:
            os.kill(os.getpid(), signum)  # a second signal, in the middle of the write


def _signalled_run(args, run_dir: Path, signum: int, second: bool, tmp_path: Path) -> subprocess.CompletedProcess:
    ready = tmp_path / "ready"
    cmd = [sys.executable, "-m", "regnet.train", *args, f"hydra.run.dir={run_dir}",
           "+callbacks.wait._target_=tests.test_signals.WaitForSignal", f"+callbacks.wait.ready={ready}",
           f"+callbacks.wait.second={second}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}  # as the in-process runs (one_thread)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), f"the run never reached the signal point: {proc.communicate()[1][-3000:]}"
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("signum", "second"), [(signal.SIGTERM, True), (signal.SIGINT, False)])
def test_a_signal_checkpoints_the_step_records_interrupted_exits_128_plus_signal_and_resumes_equal(
    signum,
    second,
    data_root,
    tmp_path,
    reference,  # noqa: F811 (the fixture of tests/test_resume.py)
):
    run_dir = tmp_path / "run"
    args = _kill_args(data_root)
    out = _signalled_run(args, run_dir, signum, second, tmp_path)
    name = signal.Signals(signum).name
    assert out.returncode == 128 + signum, out.stderr[-3000:]
    assert f"interrupted by {name} at step {SIGNAL_STEP}" in out.stderr
    assert "run the same command to resume it" in out.stderr
    if second:
        assert f"{name} received while stopping" in out.stdout + out.stderr
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "interrupted" and record["global_step"] == SIGNAL_STEP
    assert record["attempts"] == [
        {"attempt": 1, "ended": "interrupted", "reason": name, "resumed_from_step": None, "end_step": SIGNAL_STEP,
         "steps_redone": None, "slurm_job_id": None}
    ]  # fmt: skip
    # the checkpoint is whole and at the step the signal arrived (the step checkpoints fall on 6, 12, 18)
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == SIGNAL_STEP
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]  # no temporary file

    got = train(compose_cfg(args, return_hydra_config=True), run_dir)  # the same command again
    want = json.loads((reference / "results.json").read_text())
    assert got["resumed_from_step"] == SIGNAL_STEP
    assert _compared(got) == _compared(want)
    assert got["attempts"][1] == {"attempt": 2, "ended": "completed", "reason": None,
                                  "resumed_from_step": SIGNAL_STEP, "end_step": want["global_step"],
                                  "steps_redone": 0, "slurm_job_id": None}  # fmt: skip
    timing = [c for c in pd.read_csv(reference / "metrics.csv").columns if "images_per_s" in c]
    want_log, got_log = (pd.read_csv(d / "metrics.csv").drop(columns=timing) for d in (reference, run_dir))
    pd.testing.assert_frame_equal(got_log, want_log)
    assert TIMING in got["metrics"]


def _records(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/results.json")}


def _signalled_sweep(args: list[str], env: dict, ready: Path, send: Callable[[subprocess.Popen], None]):
    """``python -m regnet.train *args`` until a job touches ``ready``; then ``send(proc)`` (the signal) and wait
    for the sweep to end. Returns (exit code, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "regnet.train", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), f"no job reached the signal point: {proc.communicate()[1][-3000:]}"
        send(proc)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "gpus", "stacked", "submitit_cpu"])
def test_a_signal_to_a_sweep_stops_its_running_jobs_the_same_way_and_the_same_command_resumes(
    launcher, data_root, tmp_path
):
    """SIGTERM to ``python -m regnet.train -m seed=0,1`` while a job trains (the basic launcher: in this process;
    gpus: two joblib workers at once, the signal passed on to them; stacked: both jobs as one stack in this
    process; submitit_cpu: two job processes of submitit's local executor): each running job writes its
    checkpoint at its step and records ``interrupted``, the sweep exits 143; the same command again completes every job,
    resuming the interrupted ones with 0 steps redone."""
    sweep, ready = tmp_path / "sweep", tmp_path / "ready"
    args = ["-m", f"hydra/launcher={launcher}", "jobs_per_gpu=2", "seed=0,1", *_kill_args(data_root),
            f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=${hydra.job.num}",
            "+callbacks.wait._target_=tests.test_signals.WaitForSignal", f"+callbacks.wait.ready={ready}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    returncode, err = _signalled_sweep(args, env, ready, lambda proc: proc.send_signal(signal.SIGTERM))
    assert returncode == 143, err[-3000:]
    stopped = _records(sweep)
    statuses = {r["status"] for r in stopped.values()}
    assert "interrupted" in statuses and statuses <= {"interrupted", "completed"}, err[-3000:]
    if launcher != "submitit_cpu":  # a local submitit job still starting ignores SIGTERM (submitit's handler)
        assert statuses == {"interrupted"}
    if launcher == "basic":
        assert list(stopped) == ["0"]  # job 1 never started
    if launcher == "stacked":  # one stack of both jobs, stopped together; its checkpoint is the stack's
        assert sorted(stopped) == ["0", "1"]
    for job, record in ((j, r) for j, r in stopped.items() if r["status"] == "interrupted"):
        if record["global_step"] == 0:  # stopped before its first step (still setting up): nothing to save
            continue
        where = stack_dir_for([sweep / "0", sweep / "1"]) if launcher == "stacked" else sweep / job
        ckpt = torch.load(where / "checkpoints" / "last.ckpt", weights_only=False)
        assert ckpt["global_step"] == record["global_step"] == record["attempts"][0]["end_step"] > 0

    again = subprocess.run([sys.executable, "-m", "regnet.train", *args], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    done = _records(sweep)
    assert sorted(done) == ["0", "1"] and {r["status"] for r in done.values()} == {"completed"}
    for job, record in ((j, r) for j, r in stopped.items() if r["status"] == "interrupted"):
        last = done[job]["attempts"][-1]
        assert (last["resumed_from_step"] or 0) == record["global_step"] and last["steps_redone"] == 0


class SignalInSecondEpoch(L.Callback):
    """Sends its own process SIGTERM after the second step of the second epoch (step 5 of 3-step epochs)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 1 and _guard(trainer).received is None:
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_run_resumed_after_a_signal_continues_its_logger_runs(data_root, offline):  # noqa: F811
    """SIGTERM at step 5, then the same command: the TensorBoard, W&B and MLflow runs of the interrupted attempt
    go on (the same ids, one MLflow run ending FINISHED, each epoch logged once), no duplicate runs."""
    run_dir = offline / "run"
    args = [f"data.root={data_root}", "logger=[tensorboard,wandb,mlflow]", *tiny("trainer.max_epochs=3")]
    signal_at_5 = "+callbacks.sig._target_=tests.test_signals.SignalInSecondEpoch"
    with pytest.raises(Interrupted):
        train(compose_cfg([*args, signal_at_5], return_hydra_config=True), run_dir)
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "interrupted" and record["global_step"] == 5
    ids = json.loads((run_dir / LOGGER_RUNS).read_text())

    time.sleep(1.05 - time.time() % 1)  # wandb names an offline attempt's directory by the second it started
    results = train(compose_cfg(args, return_hydra_config=True), run_dir)
    assert results["status"] == "completed" and results["resumed_from_step"] == 5
    assert json.loads((run_dir / LOGGER_RUNS).read_text()) == ids
    client, (run,) = mlflow_runs(offline, "train")
    assert run.info.run_id == ids["mlflow"] and run.info.status == "FINISHED"
    epoch_steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert len(epoch_steps) == 3 and epoch_steps == sorted(set(epoch_steps))  # each epoch once
    wb = wandb_ended(run_dir)
    assert wb["id"] == ids["wandb"] and wb["exit"] == 0
    assert [e.step for e in tensorboard_scalars(run_dir / "tensorboard").Scalars("train/loss")] == epoch_steps


class PauseOneJob(L.Callback):
    """In a sweep: the first job to end optimizer step ``step`` writes its process id to ``ready`` and waits (60 s
    at most) for the signal the test sends to that process alone; the other jobs go on."""

    def __init__(self, ready: str, step: int):
        self.ready, self.step = Path(ready), step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step != self.step:
            return
        try:
            os.close(os.open(f"{self.ready}.claim", os.O_CREAT | os.O_EXCL))  # one job, once per test
        except FileExistsError:
            return
        Path(f"{self.ready}.tmp").write_text(str(os.getpid()))
        os.replace(f"{self.ready}.tmp", self.ready)
        deadline = time.monotonic() + 60
        while _guard(trainer).received is None and time.monotonic() < deadline:
            time.sleep(0.02)


@pytest.mark.slow
def test_a_signal_to_one_gpus_worker_stops_its_job_the_others_complete_and_the_sweep_exits_143(data_root, tmp_path):
    """``hydra/launcher=gpus`` runs jobs in joblib workers; SIGTERM to one worker's process (not to the sweep's):
    its job stops at its step with a checkpoint and an ``interrupted`` record, the other job completes, and the
    sweep exits 143 with a line naming the interrupted run; the same command resumes that one and skips the other."""
    sweep, ready, step = tmp_path / "sweep", tmp_path / "ready", 6  # epoch 1 of 4-step epochs
    args = ["-m", "hydra/launcher=gpus", "jobs_per_gpu=2", "seed=0,1", f"data.root={data_root}",
            *tiny("trainer.max_epochs=2", "trainer.limit_train_batches=4", "data.batch_size=8"), *QUIET,
            f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=${hydra.job.num}",
            "+callbacks.pause._target_=tests.test_signals.PauseOneJob", f"+callbacks.pause.ready={ready}",
            f"+callbacks.pause.step={step}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def signal_the_worker(proc: subprocess.Popen) -> None:
        worker = int(ready.read_text())
        assert worker != proc.pid and worker in descendants(proc.pid)  # a joblib worker of the sweep
        os.kill(worker, signal.SIGTERM)

    returncode, err = _signalled_sweep(args, env, ready, signal_the_worker)
    assert returncode == 143, err[-3000:]
    stopped = _records(sweep)
    assert sorted(r["status"] for r in stopped.values()) == ["completed", "interrupted"], err[-3000:]
    (job,) = (j for j, r in stopped.items() if r["status"] == "interrupted")
    assert stopped[job]["global_step"] == step and stopped[job]["attempts"][0]["reason"] == "SIGTERM"
    assert torch.load(sweep / job / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == step
    assert f"regnet: sweep job {sweep / job} was interrupted by SIGTERM at step {step}" in err
    assert err.rstrip().endswith("run the same command to resume it")

    again = subprocess.run([sys.executable, "-m", "regnet.train", *args], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    done = _records(sweep)
    assert {r["status"] for r in done.values()} == {"completed"}
    assert done[job]["attempts"][-1]["resumed_from_step"] == step and done[job]["attempts"][-1]["steps_redone"] == 0
    (other,) = set(done) - {job}
    assert done[other] == stopped[other]  # skipped: completed before
