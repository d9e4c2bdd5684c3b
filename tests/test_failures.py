"""Failure isolation: a diverging run stops at once with status `diverged` and its first bad step; any other
error during training is recorded as `failed`; bad input stops before anything is written, with one line."""

from __future__ import annotations

import json
import os

import pytest

from regnet.errors import Diverged
from regnet.files import write_atomic
from regnet.train import train
from tests.conftest import compose_cfg, tiny


def test_diverged_run_records_first_bad_step(data_root, tmp_path):
    cfg = compose_cfg(
        [
            "model=simplenet",
            "optim.lr=1e30",
            "sched=none",
            f"data.root={data_root}",
            *tiny("trainer.limit_train_batches=10", "trainer.max_epochs=3"),
        ],
        return_hydra_config=True,
    )
    with pytest.raises(Diverged) as err:
        train(cfg, tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "diverged"
    assert results["diverged_step"] == err.value.step
    assert results["global_step"] == err.value.step  # stopped at once (CPU): no step after the bad one
    assert results["diverged_step"] < 10


def test_interrupted_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "results.json"
    write_atomic(target, '{"status": "completed"}')

    with pytest.raises(TypeError):
        write_atomic(target, 12345)  # the write itself fails half-way
    assert json.loads(target.read_text()) == {"status": "completed"}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temp file left behind


def test_outputs_get_the_mode_of_a_new_file(tmp_path):
    """Atomic writes go through mkstemp, whose files are 0600: results, logs, tables and figures then could not
    be read by anyone else on a shared machine. They get 0666 less the umask, as open() would give them."""
    import stat

    from regnet.analysis.plots import save_figure, subplots
    from regnet.loggers.csv import CSVLogger

    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "results.json", "{}")
        save_figure(subplots()[0], tmp_path / "figure.png")
        logger = CSVLogger(save_dir=tmp_path / "run", name="", version="")
        logger.log_metrics({"train/loss": 1.0}, step=0)
        logger.log_metrics({"lr-SGD": 0.1}, step=1)  # a new column: the file is rewritten atomically
    finally:
        os.umask(old)
    for f in (tmp_path / "results.json", tmp_path / "figure.png", tmp_path / "run" / "metrics.csv"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o640, f
