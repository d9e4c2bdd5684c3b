"""The command line's error paths, in-process: bad input is one line on stderr and exit 2 with nothing written;
a run that fails during training is exit 1; in a sweep a bad job is recorded and the others run; a run's
directory ignores settings that cannot change its result. One subprocess smoke test checks the real command."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import regnet.train
from regnet.config import run_name
from regnet.errors import one_line
from regnet.lifecycle import TrainingFailed
from regnet.train import train
from tests.conftest import QUIET, REPO, compose_cfg, run_cli, tiny


def _corrupt(data_root: Path, tmp_path: Path) -> Path:
    import shutil

    root = tmp_path / "corrupt"
    shutil.copytree(data_root / "MNIST", root / "MNIST")
    images = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])  # truncated
    return root


def _lenet5_checkpoint(data_root: Path, tmp_path: Path) -> Path:
    """A real checkpoint of another model (LeNet-5), to hand to a LeNet run."""
    out = tmp_path / "other"
    train(
        compose_cfg(
            ["model=lenet5", f"data.root={data_root}", *QUIET, *tiny("trainer.limit_train_batches=1")],
            return_hydra_config=True,
        ),
        out,
    )
    return out / "checkpoints" / "last.ckpt"


BAD = {
    "unknown_model": (["model=lenett"], "unknown model 'lenett' (available: convnet, lenet,"),
    "unknown_data": (["data=imagenet"], "unknown data 'imagenet'"),
    "unknown_reg": (["reg=[l2,nope]"], "unknown reg 'nope'"),
    "unknown_optim": (["optim=adamw2"], "unknown optim 'adamw2'"),
    "unknown_sched": (["sched=nope"], "unknown sched 'nope'"),
    "unknown_experiment": (["experiment=nope"], "unknown experiment 'nope'"),
    "unknown_variant": (["variant=nope"], "unknown variant 'nope'"),
    "unknown_launcher": (["-m", "hydra/launcher=nosuch"], "unknown hydra/launcher 'nosuch' (available: basic, gpus,"),
    "unknown_key": (["trainer.max_epoch=3"], "unknown config key 'trainer.max_epoch'"),
    "unknown_key_hint": (["trainer.max_epoch=3"], "+trainer.max_epoch="),
    "append_existing_key": (["+trainer.max_epochs=3"], "set it with trainer.max_epochs=..."),
    "negative_lambda": (["reg=jacobian", "reg.jacobian.lam=-1"], "reg.jacobian.lam=-1"),
    "negative_lr": (["optim.lr=-0.1"], "Invalid learning rate: -0.1"),
    "lr_not_a_number": (["optim.lr=abc"], "optim.lr='abc' is invalid: it must be a number"),
    "lr_nan": (["optim.lr=nan"], "optim.lr=nan is invalid"),
    "lr_inf": (["optim.lr=inf"], "optim.lr=inf is invalid"),
    "epochs_not_a_number": (["trainer.max_epochs=abc"], "trainer.max_epochs='abc' is invalid: it must be an integer"),
    "lambda_not_a_number": (["reg=jacobian", "reg.jacobian.lam=abc"], "reg.jacobian.lam='abc' is invalid"),
    "data_seed_not_a_number": (["data.seed=abc"], "data.seed='abc' is invalid: it must be an integer"),
    "negative_clip": (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1 is invalid"),
    "schedule_refused": (["sched=cosine", "sched.scheduler.T_max=-5"], "sched.scheduler.T_max=-5 is invalid"),
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
    "classes_differ": (["model.num_classes=5"], "model lenet gives 5 logits but mnist has 10 classes"),
    "ckpt_missing": (["ckpt_path=/nonexistent.ckpt"], "ckpt_path=/nonexistent.ckpt is invalid: no such file"),
    "ckpt_not_a_checkpoint": (["NOT_A_CHECKPOINT"], "is invalid: not a Lightning checkpoint"),
    "ckpt_of_another_model": (["OTHER_MODEL"], "is invalid: its weights do not fit this model"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, data_root, tmp_path, monkeypatch, capsys):
    args, expected = BAD[case]
    if args == ["CORRUPT"]:
        args = [f"data.root={_corrupt(data_root, tmp_path)}"]
    elif args == ["NOT_A_CHECKPOINT"]:
        (tmp_path / "notes.ckpt").write_text("not a checkpoint")
        args = [f"ckpt_path={tmp_path / 'notes.ckpt'}"]
    elif args == ["OTHER_MODEL"]:
        args = [f"ckpt_path={_lenet5_checkpoint(data_root, tmp_path)}"]
    run = tmp_path / "run"
    root = [] if "data.root" in str(args) else [f"data.root={data_root}"]
    code, err = run_cli(
        [*root, *tiny(), *QUIET, *args, f"hydra.run.dir={run}", f"hydra.sweep.dir={run}"], monkeypatch, capsys
    )
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("regnet: ") and expected in lines[0], err
    assert not list(run.rglob("results.json")) and not list(run.rglob("*.ckpt"))


def test_a_bad_job_in_a_sweep_is_recorded_and_the_others_run(data_root, tmp_path, monkeypatch, capsys):
    """``-m data.batch_size=16,0,8``: job 1 has bad input. Jobs 0 and 2 still train; job 1's directory says why
    (analysis lists it); the sweep exits 2 at the end."""
    code, err = run_cli(
        ["-m", f"data.root={data_root}", *tiny(), "data.batch_size=16,0,8", *QUIET, f"hydra.sweep.dir={tmp_path}"],
        monkeypatch,
        capsys,
    )
    assert code == 2
    assert "regnet: job 1 (" in err and "data.batch_size=0 is invalid" in err
    statuses = {
        re.search(r"data.batch_size=\d+", p.parent.name).group(): json.loads(p.read_text())
        for p in tmp_path.glob("*/results.json")
    }
    assert {k: v["status"] for k, v in statuses.items()} == {
        "data.batch_size=16": "completed",
        "data.batch_size=0": "invalid",
        "data.batch_size=8": "completed",
    }
    assert "data.batch_size=0 is invalid" in statuses["data.batch_size=0"]["error"]

    from regnet.analysis.runs import find_runs

    problems = find_runs(tmp_path).problems_table()
    assert problems.status.tolist() == ["invalid"]


def test_diverged_survives_the_trip_back_from_a_worker_process():
    import pickle

    from regnet.errors import Diverged

    back = pickle.loads(pickle.dumps(Diverged(7, float("nan"))))
    assert (back.step, str(back)) == (7, "training loss became nan at step 7: the run diverged")


def test_a_diverging_job_in_a_sweep_is_exit_1_after_the_others(data_root, tmp_path, monkeypatch, capsys):
    code, err = run_cli(
        [
            "-m",
            "model=simplenet",
            "optim.lr=1e-3,1e30",
            "sched=none",
            f"data.root={data_root}",
            *tiny("trainer.limit_train_batches=10"),
            *QUIET,
            f"hydra.sweep.dir={tmp_path}",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 1
    statuses = sorted(json.loads(p.read_text())["status"] for p in tmp_path.glob("*/results.json"))
    assert statuses == ["completed", "diverged"]
    assert err.strip().splitlines()[-1].startswith("regnet: training loss became")


def test_run_name_ignores_what_cannot_change_the_result():
    ignored = compose_cfg(return_hydra_config=True).hydra.job.config.override_dirname.exclude_keys
    base = ["seed=1", "reg=[l2,jacobian]"]
    noise = [
        "callbacks.progress_bar.refresh_rate=0",
        "logger=[csv,tensorboard]",
        "trainer.devices=[1]",
        "+logger.csv.flush_logs_every_n_steps=3",
        "data.root=/elsewhere",
        "jobs_per_gpu=2",
    ]
    assert run_name(base + noise, ignored) == run_name(base, ignored) == "reg=[l2,jacobian],seed=1"
    assert run_name(["model.dropout=0.1", "seed=1"], ignored) != run_name(["seed=1"], ignored)  # a result setting
    assert run_name([], ignored) == "default"
    assert run_name(["data.root_extra=1"], ignored) == "data.root_extra=1"  # a prefix of a name is not its parent


def test_the_same_run_with_another_progress_bar_resumes(data_root, tmp_path, monkeypatch, capsys):
    """A run interrupted after its last checkpoint (results.json missing), re-run with another progress bar
    refresh rate: the same directory, resumed rather than retrained."""
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        "seed=3",
        f"data.root={data_root}",
        *tiny(),
        f"hydra.sweep.dir={sweep}",
        "callbacks.model_summary=null",
    ]
    assert run_cli([*args, "callbacks.progress_bar.refresh_rate=20"], monkeypatch, capsys)[0] == 0
    (run,) = [p.parent for p in sweep.glob("*/results.json")]
    first = json.loads((run / "results.json").read_text())
    (run / "results.json").unlink()  # as if killed between the last checkpoint and results.json
    assert run_cli([*args, "callbacks.progress_bar.refresh_rate=0"], monkeypatch, capsys)[0] == 0
    assert [p.parent for p in sweep.glob("*/results.json")] == [run]
    again = json.loads((run / "results.json").read_text())
    assert again["resumed_from_step"] == first["global_step"] == again["global_step"]
    assert "resuming from" in (run / "train.log").read_text()  # regnet's log lines land in the run's train.log


def test_a_damaged_results_json_is_set_aside_and_the_run_trains(data_root, tmp_path):
    (tmp_path / "results.json").write_text('{"status": "compl')  # a half-written file from another tool
    cfg = compose_cfg([f"data.root={data_root}", *tiny(), *QUIET, "force=true"], return_hydra_config=True)
    results = train(cfg, tmp_path)
    assert results["status"] == "completed"
    assert (tmp_path / "results.json.corrupt").read_text() == '{"status": "compl'
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "completed"


def test_disk_full_during_training_is_a_failed_run_exit_1(data_root, tmp_path, monkeypatch, capsys):
    """Writes fail half-way through a checkpoint (a real write error: the file-size limit, EFBIG), and then
    results.json cannot be written either (no space): exit 1 (a run that failed, not bad input), one line
    naming the run and the file that could not be written."""
    import resource
    import signal

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "results.json"))

    monkeypatch.setattr(regnet.lifecycle, "write_results", no_space)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))  # LeNet's checkpoint is ~740 kB
        code, err = run_cli(
            [f"data.root={data_root}", *tiny(), *QUIET, f"hydra.run.dir={tmp_path / 'run'}"], monkeypatch, capsys
        )
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert code == 1, err
    (line,) = err.strip().splitlines()
    assert "failed during training (OSError: [Errno 27] File too large" in line, line
    assert str(tmp_path / "run") in line and "No space left on device" in line and "results.json" in line, line


def test_training_failure_is_recorded_and_raised_as_one_line(data_root, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access\nsecond line")

    cfg = compose_cfg([f"data.root={data_root}", *tiny(), *QUIET], return_hydra_config=True)
    monkeypatch.setattr(regnet.module.RegNetModule, "training_step", broken)
    with pytest.raises(TrainingFailed, match=r"failed during training \(RuntimeError: CUDA error: an illegal") as err:
        train(cfg, tmp_path)
    assert "\n" not in str(err.value)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "failed" and "second line" in (tmp_path / "error.txt").read_text()


def test_an_unwritable_run_directory_says_so():
    """logging.config hides the PermissionError behind "Unable to configure handler 'file'"."""
    err = ValueError("Unable to configure handler 'file'")
    err.__cause__ = PermissionError(errno.EACCES, "Permission denied", "/ro/run/train.log")
    assert one_line(err) == (
        "cannot write the run's log file: [Errno 13] Permission denied: '/ro/run/train.log' "
        "(choose a writable run directory with hydra.run.dir=...)"
    )


@pytest.mark.slow
def test_the_real_command_line(data_root, tmp_path):
    """The one subprocess: ``python -m regnet.train`` trains, and bad input is exit 2 with one line."""
    env = {**os.environ, "REGNET_DATA": str(data_root), "PYTHONPATH": str(REPO)}
    env.pop("HYDRA_FULL_ERROR", None)
    cmd = [sys.executable, "-m", "regnet.train", *tiny(), *QUIET, f"hydra.run.dir={tmp_path}"]
    ok = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "completed"
    cmd[-1] = f"hydra.run.dir={tmp_path / 'bad'}"
    bad = subprocess.run([*cmd, "optim.lr=abc"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "regnet: optim.lr='abc' is invalid: it must be a number (default 0.1)"
    ]


def test_imports_point_one_way_train_to_cli():
    """regnet/train.py uses regnet/cli.py, never the other way: importing the command line loads no training
    module, and it has no ``run_job`` that would shadow Hydra's."""
    code = "import sys, regnet.cli; print(sorted(m for m in sys.modules if m.startswith('regnet.train')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"
    import regnet.cli

    assert not hasattr(regnet.cli, "run_job") and callable(regnet.cli.job_scope)
