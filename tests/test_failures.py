"""Failure isolation: a diverging run stops at once with status `diverged` and its first bad step; any other
error during training is recorded as `failed`; bad input stops before anything is written, with one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from regnet.errors import Diverged
from regnet.results import write_atomic
from regnet.train import train
from tests.conftest import REPO, compose_cfg, tiny


def test_diverged_run_records_first_bad_step(data_root, tmp_path):
    cfg = compose_cfg(["model=simplenet", "optim.lr=1e30", "sched=none", f"data.root={data_root}",
                       *tiny("trainer.limit_train_batches=10", "trainer.max_epochs=3")], return_hydra_config=True)
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

    class Boom(str):
        def __str__(self):
            raise RuntimeError("disk full")

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


def _cli(args, data_root, tmp_path):
    env = {**os.environ, "REGNET_DATA": str(data_root), "PYTHONPATH": str(REPO)}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "regnet.train", *args, f"hydra.run.dir={tmp_path / 'run'}",
                           f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_sweep_goes_on_after_a_failed_run(data_root, tmp_path):
    """One diverging job in a sweep: the others complete, the sweep exits non-zero, analysis can list it."""
    out = _cli(["-m", "model=simplenet", "optim.lr=1e-3,1e30", "sched=none", *tiny("trainer.limit_train_batches=10")],
               data_root, tmp_path)
    assert out.returncode != 0
    statuses = sorted(json.loads(p.read_text())["status"] for p in (tmp_path / "sweep").glob("*/results.json"))
    assert statuses == ["completed", "diverged"]
    assert out.stderr.strip().splitlines()[-1].startswith("regnet: training loss became")


def _corrupt(data_root, tmp_path):
    import shutil

    root = tmp_path / "corrupt"
    shutil.copytree(data_root / "MNIST", root / "MNIST")
    images = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])  # truncated
    return root


BAD = {
    "unknown_model": (["model=lenett"], "unknown model 'lenett'"),
    "unknown_data": (["data=imagenet"], "unknown data 'imagenet'"),
    "unknown_reg": (["reg=[l2,nope]"], "unknown reg 'nope'"),
    "unknown_optim": (["optim=adamw2"], "unknown optim 'adamw2'"),
    "unknown_sched": (["sched=nope"], "unknown sched 'nope'"),
    "unknown_experiment": (["experiment=nope"], "unknown experiment 'nope'"),
    "unknown_variant": (["variant=nope"], "unknown variant 'nope'"),
    "unknown_key": (["trainer.max_epoch=3"], "unknown config key"),
    "negative_lambda": (["reg=jacobian", "reg.jacobian.lam=-1"], "reg.jacobian.lam=-1"),
    "negative_lr": (["optim.lr=-0.1"], "Invalid learning rate: -0.1"),
    "eps_zero": (["reg=svb", "reg.svb.eps=0"], "reg.svb.eps=0"),
    "svb_every_zero": (["reg=svb", "reg.svb.every=0"], "reg.svb.every=0"),
    "n_proj_zero": (["reg=jacobian", "reg.jacobian.n_proj=0"], "n_proj=0"),
    "n_proj_below_minus_one": (["reg=jacobian", "reg.jacobian.n_proj=-2"], "n_proj=-2"),
    "val_fraction": (["data.val_fraction=1.5"], "data.val_fraction=1.5"),
    "batch_size": (["data.batch_size=0"], "data.batch_size=0"),
    "max_epochs": (["trainer.max_epochs=0"], "trainer.max_epochs=0"),
    "seed": (["seed=abc"], "seed='abc' is invalid: it must be an integer"),
    "missing_files": (["data.root=/nonexistent/regnet", "data.download=false"], "/nonexistent/regnet/MNIST/raw"),
    "corrupt_files": (["CORRUPT"], "cannot be read"),
    "model_does_not_fit": (["model=lenet", "model.image_size=32"], "does not fit mnist inputs (1×28×28)"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_one_line_and_nothing_written(case, data_root, tmp_path):
    args, expected = BAD[case]
    if args == ["CORRUPT"]:
        args = [f"data.root={_corrupt(data_root, tmp_path)}"]
    out = _cli([*args, "trainer.max_epochs=1" if case != "max_epochs" else "trainer.limit_train_batches=2",
                "trainer.limit_train_batches=2"], data_root, tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("regnet: ") and expected in last, last
    assert "Traceback" not in out.stderr
    assert not list(tmp_path.rglob("results.json"))
