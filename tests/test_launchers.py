"""Sweeps through real Hydra launchers: submitit's local executor, the local GPU-packing preset (joblib) and
the SLURM preset's settings; DDP with two CPU processes (gloo)."""

from __future__ import annotations

import csv
import json
import os

import pytest

from regnet.config import _parallel_jobs, gpu_for_job
from regnet.train import train
from tests.conftest import QUIET, compose_cfg, run_cli, tiny, train_cli


def _cli(args, data_root, timeout=600, env=None):
    return train_cli(args, data_root, timeout, env)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["submitit_cpu", "gpus"])
def test_parallel_launcher_shares_the_cores_and_a_bad_job_stops_no_other(
    launcher, data_root, tmp_path, monkeypatch, capsys
):
    """Two jobs at once on the CPU, one with bad input: that one is recorded invalid, the other completes, and the
    sweep exits 2 at the end. Each job uses 1/2 of the cores for torch's threads (gpus preset, jobs_per_gpu=2) or
    cpus_per_task (submitit's local executor, 1 in the preset)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    args = ["-m", f"hydra/launcher={launcher}", "jobs_per_gpu=2", f"data.root={data_root}", *tiny(),
            "data.batch_size=16,0", *QUIET, f"hydra.sweep.dir={tmp_path}"]  # fmt: skip
    code, err = run_cli(args, monkeypatch, capsys)
    assert code == 2, err
    results = {r["status"]: r for r in (json.loads(p.read_text()) for p in tmp_path.glob("*/results.json"))}
    assert sorted(results) == ["completed", "invalid"]
    cores = len(os.sched_getaffinity(0))
    assert results["completed"]["torch_threads"] == (1 if launcher == "submitit_cpu" else max(1, cores // 2))


@pytest.mark.slow
def test_user_thread_setting_wins_in_a_sweep(data_root, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = _cli(
        ["-m", "hydra/launcher=gpus", "jobs_per_gpu=2", "seed=0", f"hydra.sweep.dir={tmp_path}", *tiny()],
        data_root,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(next(tmp_path.glob("*/results.json")).read_text())["torch_threads"] == 1


def test_single_run_keeps_torchs_thread_count(data_root, tmp_path):
    import torch

    before = torch.get_num_threads()
    result = train(compose_cfg([f"data.root={data_root}", *tiny()], return_hydra_config=True), tmp_path)
    assert result["torch_threads"] == before == torch.get_num_threads()


def test_gpu_assignment_round_robin_and_packing():
    assert [gpu_for_job(k, 4) for k in range(9)] == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    assert _parallel_jobs(3) >= 3  # jobs_per_gpu on each GPU, or on the CPU
    with pytest.raises(ValueError, match="jobs_per_gpu"):
        _parallel_jobs(0)


def test_slurm_preset_overridable():
    cfg = compose_cfg(
        [
            "hydra/launcher=slurm",
            "hydra.launcher.partition=gpu",
            "hydra.launcher.timeout_min=90",
            "hydra.launcher.gpus_per_node=2",
            "hydra.launcher.array_parallelism=8",
        ],
        return_hydra_config=True,
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.timeout_min, launcher.gpus_per_node, launcher.array_parallelism) == (
        "gpu",
        90,
        2,
        8,
    )
    assert launcher.mem_gb and launcher.cpus_per_task


@pytest.mark.parametrize("preset", ["slurm", "submitit_cpu"])
def test_submitit_presets_without_the_slurm_extra_fail_in_one_line(preset, tmp_path):
    """hydra-submitit-launcher is the ``slurm`` extra: without it (its plugin unimportable) the presets end in one
    line naming the extra, exit 2, nothing written."""
    import subprocess
    import sys

    from tests.conftest import REPO

    code = (
        "import sys; sys.modules['hydra_plugins.hydra_submitit_launcher'] = None\n"  # as if not installed
        f"sys.argv = ['regnet.train', '-m', 'hydra/launcher={preset}', 'hydra.sweep.dir={tmp_path / 'sweep'}']\n"
        "from regnet.cli import command_line; from regnet.train import main\nwith command_line(): main()"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"regnet: hydra/launcher={preset} needs hydra-submitit-launcher, which is not installed: "
        "pip install 'regnet[slurm]'"
    ]
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow
def test_ddp_matches_single_process_with_jacobian_and_svb(data_root, tmp_path):
    """Two CPU processes (gloo) write one result and log each epoch once, not once per rank. 2 ranks × batch 8
    see the same samples per step as 1 process × batch 16 (rank r takes every 2nd index of the same order) and
    DDP averages their gradients, so with the exact Jacobian norm (no random projection), SVB projections and no
    dropout both runs end with the same model."""
    common = [
        "reg=[jacobian,svb]",
        "reg.jacobian.n_proj=-1",
        "reg.svb.every=2",
        "model.dropout=0",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=2",
        "trainer.limit_test_batches=1",
        "data.eval_batch_size=64",
    ]
    ddp = _cli(
        ["trainer=ddp", "trainer.devices=2", "data.batch_size=8", f"hydra.run.dir={tmp_path / 'ddp'}", *common],
        data_root,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert a["status"] == "completed" and a["metrics"]["train/jacobian"] > 0
    rows = [r for r in csv.DictReader(open(tmp_path / "ddp" / "metrics.csv")) if r.get("train/loss")]
    assert len(rows) == 2  # logged once per epoch, not once per rank
    b = train(compose_cfg([f"data.root={data_root}", "data.batch_size=16", *common], return_hydra_config=True),
              tmp_path / "single")  # fmt: skip
    assert a["global_step"] == b["global_step"] == 4
    assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-4)
    assert a["metrics"]["train/jacobian"] == pytest.approx(b["metrics"]["train/jacobian"], rel=1e-4)
