"""DDP under a signal (regnet/signals.py): ``python -m regnet.train trainer=ddp trainer.accelerator=cpu
trainer.devices=2`` (two CPU ranks, gloo; Lightning starts rank 1 as a child of the launching process). SIGTERM to
the launching process only (what a scheduler sends to the command it started), then, after the same command
resumed, SIGTERM to the whole process group (what ``scancel`` does): each time every rank stops at the same step
with one checkpoint, the run is recorded ``interrupted`` with its attempts, the command exits 143 and no rank is
left behind; the same command a third time ends with exactly the model and test results of a DDP run that never
stopped (CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch

from regnet.signals import CheckpointAtSignal
from tests.conftest import QUIET, REPO

STOPS = {3: "launcher", 6: "group"}  # optimizer step → who gets SIGTERM; 4 steps per epoch: both mid-epoch


class PauseForSignal(L.Callback):
    """Rank 0 touches ``<ready>-<step>`` at the end of each optimizer step in ``steps`` (once) and waits (60 s at
    most) for the test's signal; rank 1 goes on, to wait in the next collective for rank 0."""

    def __init__(self, ready: str, steps: list[int]):
        self.ready, self.steps = ready, list(steps)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        ready = Path(f"{self.ready}-{trainer.global_step}")
        if trainer.global_step in self.steps and trainer.is_global_zero and not ready.exists():
            guard = next(cb.guard for cb in trainer.callbacks if isinstance(cb, CheckpointAtSignal))
            ready.touch()
            deadline = time.monotonic() + 60
            while guard.received is None and time.monotonic() < deadline:
                time.sleep(0.02)


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "regnet.train", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip


def _finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    """Its stderr once every rank has ended (rank 1 holds the same pipes); a hang fails the test and is killed."""
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"the DDP run hung (a rank waiting for another in a collective): {proc.communicate()[1][-3000:]}")


def _no_rank_left(group: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    os.killpg(group, signal.SIGKILL)
    return False


@pytest.mark.slow
def test_ddp_ranks_stop_at_one_step_on_a_signal_to_the_launcher_or_the_group_and_resume_equal(data_root, tmp_path):
    common = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", f"data.root={data_root}",
              "trainer.max_epochs=2", "trainer.limit_train_batches=4", "trainer.limit_test_batches=1",
              "data.batch_size=8", "data.eval_batch_size=32", *QUIET]  # fmt: skip
    reference = _start([*common, f"hydra.run.dir={tmp_path / 'reference'}"])  # alongside the signalled attempts
    run_dir = tmp_path / "run"
    steps = ",".join(map(str, STOPS))
    args = [*common, f"hydra.run.dir={run_dir}", "+callbacks.pause._target_=tests.test_signals_ddp.PauseForSignal",
            f"+callbacks.pause.ready={tmp_path / 'ready'}", f"+callbacks.pause.steps=[{steps}]"]  # fmt: skip
    for n, (step, whom) in enumerate(STOPS.items(), start=1):
        proc, ready = _start(args), tmp_path / f"ready-{step}"
        deadline = time.monotonic() + 120
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), f"rank 0 never reached step {step}: {_finish(proc)[-3000:]}"
        if whom == "launcher":
            proc.send_signal(signal.SIGTERM)  # rank 1 never gets it: the ranks must agree to stop here
        else:
            os.killpg(proc.pid, signal.SIGTERM)
        err = _finish(proc)
        assert proc.returncode == 143, err[-3000:]
        assert _no_rank_left(proc.pid), "a rank outlived the command"
        assert f"interrupted by SIGTERM at step {step} (checkpoint written)" in err
        record = json.loads((run_dir / "results.json").read_text())
        assert record["status"] == "interrupted" and record["global_step"] == step
        assert [(a["ended"], a["reason"], a["end_step"], a["steps_redone"]) for a in record["attempts"]] == [
            ("interrupted", "SIGTERM", s, None if i == 0 else 0) for i, s in enumerate(list(STOPS)[:n])
        ]
        assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == step
        assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]  # one, and whole

    done = _start(args)  # the same command again: resumes from step 6 and completes
    err = _finish(done)
    assert done.returncode == 0, err[-3000:]
    assert _finish(reference) is not None and reference.returncode == 0
    ref = tmp_path / "reference"
    got, want = (json.loads((d / "results.json").read_text()) for d in (run_dir, ref))
    assert got["attempts"][-1] == {"attempt": 3, "ended": "completed", "reason": None, "resumed_from_step": 6,
                                   "end_step": 8, "steps_redone": 0, "slurm_job_id": None}  # fmt: skip
    # exactly the same model and test results (CPU); the logged training numbers too, the epochs resumed mid-epoch
    # included (a checkpoint carries the counts of every rank, summed, and rank 0 alone restores them): the top-k
    # counts exactly, the loss means to float32 rounding (the ranks' partial sums are added in another order)
    weights = [torch.load(d / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for d in (run_dir, ref)]
    model = [k for k in weights[1] if k.startswith("model.")]
    assert model and all(torch.equal(weights[0][k], weights[1][k]) for k in model)
    exact = ("status", "epochs", "global_step", "test_acc", "test_loss")
    assert {k: got[k] for k in exact} == {k: want[k] for k in exact}
    want_log, got_log = (pd.read_csv(d / "metrics.csv") for d in (ref, run_dir))
    counts = [c for c in want_log.columns if c.split("/")[-1].startswith(("acc", "err")) or c.startswith("test/")]
    assert any(c.startswith("train/acc") for c in counts)
    pd.testing.assert_frame_equal(got_log[["epoch", "step", *counts]], want_log[["epoch", "step", *counts]])
    numbers = [c for c in want_log.columns if "per_s" not in c]  # not the clock's (train/images_per_s)
    pd.testing.assert_frame_equal(got_log[numbers], want_log[numbers], check_exact=False, rtol=1e-6)
