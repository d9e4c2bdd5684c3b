"""The drifts between an ordinary run and a stack, each with a kill test: a run with augmentation SIGKILLed
between two step checkpoints and run again ends exactly where the uninterrupted run ends (ordinary and stacked),
and a stack killed during its test (resumed at its final checkpoint) records the metrics of one never stopped."""

from __future__ import annotations

import json
import os
import signal

import lightning as L
import pytest

from regnet.stacked.train import train_stack
from regnet.train import train
from tests.conftest import compose_cfg
from tests.test_resume import _compared, _train_killed, one_thread  # noqa: F401 (a fixture)
from tests.test_stacked import _train_stack_killed, assert_states_close, csv_rows, member_cfg, model_state

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="a killed run is a forked child")

# 2 epochs of 12 batches of 8, a step checkpoint every 6 steps; the kill lands at epoch 1, batch 8 (step 20),
# between the checkpoints of steps 18 and 24; every batch is augmented (mnist_affine draws a crop and a rotation)
AUGMENTED = [
    "augment=mnist_affine",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=12",
    "data.batch_size=8",
    "data.eval_batch_size=32",
    "trainer.limit_test_batches=2",
    "callbacks.checkpoint_steps.every_n_train_steps=6",
    "trainer.accelerator=cpu",
    "callbacks.progress_bar.refresh_rate=0",
    "~callbacks.confusion",
]


def test_an_augmented_run_killed_between_checkpoints_resumes_exactly(data_root, tmp_path, one_thread):  # noqa: F811
    """The augmentation of each batch is seeded by the batch's index in the fit, which the checkpoint restores:
    the resumed run draws the crops and rotations the uninterrupted one drew."""
    args = [f"data.root={data_root}", *AUGMENTED]
    want = train(compose_cfg(args, return_hydra_config=True), tmp_path / "straight")
    run_dir = tmp_path / "resumed"
    _train_killed(args, run_dir, "mid_epoch")
    got = train(compose_cfg(args, return_hydra_config=True), run_dir)
    assert got["resumed_from_step"] == 18 and want["resumed_from_step"] is None
    assert _compared(got) == _compared(want)
    assert_states_close(model_state(run_dir), model_state(tmp_path / "straight"), tol=0.0)


# --- a stack --------------------------------------------------------------------------------------------------
MEMBERS = [["seed=0"], ["seed=1", "reg=l2"]]


def _stack_cfgs(data_root, dirs):
    return [member_cfg(data_root, d, *AUGMENTED[:-4], "callbacks.checkpoint_steps.every_n_train_steps=5", *m)
            for d, m in zip(dirs, MEMBERS, strict=True)]  # fmt: skip


@pytest.fixture(scope="module")
def straight_stack(data_root, tmp_path_factory, one_thread):  # noqa: F811
    dirs = [tmp_path_factory.mktemp("straight") / str(i) for i in range(len(MEMBERS))]
    return dirs, train_stack(_stack_cfgs(data_root, dirs), dirs)


def _metrics(results):
    return {k: v for k, v in results["metrics"].items() if "images_per_s" not in k}


def test_an_augmented_stack_killed_between_checkpoints_resumes_exactly(data_root, tmp_path, straight_stack):
    """Killed at step 8 (checkpoints at 5 and 10), the same call again resumes from step 5 and ends equal to the
    stack that never stopped: weights, learning curves and results."""
    straight, want = straight_stack
    dirs = [tmp_path / str(i) for i in range(len(MEMBERS))]
    cfgs = _stack_cfgs(data_root, dirs)
    _train_stack_killed(cfgs, dirs, step=8)
    got = train_stack(cfgs, dirs)
    assert [r["resumed_from_step"] for r in got] == [5] * len(MEMBERS)
    for a, b, g, w in zip(dirs, straight, got, want, strict=True):
        assert_states_close(model_state(a), model_state(b), tol=0.0)
        assert [r["train/loss"] for r in csv_rows(a) if r.get("train/loss")] == [
            r["train/loss"] for r in csv_rows(b) if r.get("train/loss")
        ]
        assert _metrics(g) == _metrics(w) and g["test_loss"] == w["test_loss"]


class KillInTest(L.Callback):
    def on_test_batch_start(self, trainer, *args):
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_stack_resumed_at_its_final_checkpoint_records_the_metrics_of_one_never_stopped(
    data_root, tmp_path, straight_stack
):
    """Killed during its test, after the final checkpoint: the same call again has nothing left to train, and
    every member's results.json still holds the last epoch's training metrics (``fit_metrics``), as the ordinary
    path records them."""
    straight, want = straight_stack
    dirs = [tmp_path / str(i) for i in range(len(MEMBERS))]
    cfgs = _stack_cfgs(data_root, dirs)
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        try:
            train_stack(cfgs, dirs, extra_callbacks=(KillInTest(),))
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, "the stack was not killed"
    got = train_stack(cfgs, dirs)
    assert [r["resumed_from_step"] for r in got] == [24] * len(MEMBERS)
    for d, g, w in zip(dirs, got, want, strict=True):
        assert {"train/loss", "train/acc", "test/acc"} <= set(g["metrics"])
        assert _metrics(g) == _metrics(w)
        assert _metrics(json.loads((d / "results.json").read_text())) == _metrics(w)
