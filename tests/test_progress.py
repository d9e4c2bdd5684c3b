"""Progress in a log: with stdout not a terminal (a file, a SLURM job, here a pipe) training prints a line every
N steps and one per epoch, not carriage-return frames; in a terminal it is Lightning's bar. regnet's own lines
outside Hydra reach the stderr of the moment."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from lightning.pytorch.callbacks import TQDMProgressBar

from regnet.callbacks.progress import LineProgress, progress_bar
from tests.conftest import REPO, tiny


def test_piped_training_prints_lines_per_steps_and_per_epoch(data_root, tmp_path):
    cmd = [sys.executable, "-m", "regnet.train", f"data.root={data_root}", *tiny("trainer.max_epochs=2"),
           "data.val_fraction=0.2", "callbacks.progress_bar.every_n_steps=2", f"hydra.run.dir={tmp_path}"]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "\r" not in out.stdout + out.stderr and "it/s]" not in out.stdout + out.stderr  # no bar frames
    lines = [line for line in out.stdout.splitlines() if line.startswith("[regnet] ")]
    steps = [
        line for line in lines if re.fullmatch(r"\[regnet\] epoch \d/2 step \d/6 \(batch \d/3\) [\d.]+ steps/s", line)
    ]
    assert [line.split(" step ")[1].split()[0] for line in steps] == ["2/6", "4/6", "6/6"]
    epochs = [line for line in lines if " done: " in line]
    assert len(epochs) == 2 and epochs[1].startswith("[regnet] epoch 2/2 done: step 6 after ")
    assert all(f" · {k} " in line for line in epochs for k in ("train/loss", "train/acc", "val/acc"))
    assert sum(line.startswith("[regnet] test: test/loss ") for line in lines) == 1


def test_a_terminal_gets_the_bar_and_refresh_rate_zero_nothing():
    assert isinstance(progress_bar(interactive=True), TQDMProgressBar)
    assert isinstance(progress_bar(interactive=False, every_n_steps=7), LineProgress)
    quiet = progress_bar(refresh_rate=0, interactive=False)
    assert isinstance(quiet, TQDMProgressBar) and quiet.is_disabled


def test_regnet_lines_go_to_the_stderr_of_the_moment(monkeypatch):
    """Outside Hydra, regnet's lines go to whatever ``sys.stderr`` is when they are written: a notebook kernel or a
    test runner that swaps stderr and closes the old one still gets them (no 'I/O operation on closed file')."""
    import io
    import logging

    from regnet.log import get_logger

    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # nobody configured logging (no Hydra job)
    for _ in range(2):
        stream = io.StringIO()
        monkeypatch.setattr(sys, "stderr", stream)
        get_logger("regnet.test").info("hello")
        assert stream.getvalue() == "[regnet] hello\n"
        stream.close()
