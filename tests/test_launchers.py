"""Sweeps through real Hydra launchers: submitit's local executor, the local GPU-packing preset (joblib) and
the SLURM preset's settings; DDP with two CPU processes (gloo)."""

from __future__ import annotations

import csv
import json
import os

import pytest

from regnet.config import _parallel_jobs, gpu_for_job
from tests.conftest import compose_cfg, tiny, train_cli


def _cli(args, data_root, timeout=600, env=None):
    return train_cli(args, data_root, timeout, env)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["submitit_cpu", "gpus"])
def test_two_seed_sweep_through_launcher(launcher, data_root, tmp_path):
    """Two jobs at once on the CPU share its cores: each uses 1/2 of them for torch's threads (gpus preset,
    jobs_per_gpu=2) or cpus_per_task (submitit's local executor, 1 in the preset)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    extra = ["jobs_per_gpu=2"] if launcher == "gpus" else []
    out = _cli(
        ["-m", f"hydra/launcher={launcher}", "seed=0,1", *extra, f"hydra.sweep.dir={tmp_path}", *tiny()],
        data_root,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    found = sorted(tmp_path.glob("*/results.json"))
    assert len(found) == 2
    results = [json.loads(p.read_text()) for p in found]
    assert sorted(r["seed"] for r in results) == [0, 1]
    cores = len(os.sched_getaffinity(0))
    want = 1 if launcher == "submitit_cpu" else max(1, cores // 2)
    assert [r["torch_threads"] for r in results] == [want, want]


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

    from regnet.train import train

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


@pytest.mark.slow
def test_ddp_two_cpu_processes_write_one_result(data_root, tmp_path):
    out = _cli(
        [
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "reg=[jacobian,svb]",
            "reg.svb.every=2",
            f"hydra.run.dir={tmp_path}",
            *tiny("trainer.max_epochs=2"),
        ],
        data_root,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "completed" and results["global_step"] == 6
    assert results["metrics"]["train/jacobian"] > 0
    rows = [r for r in csv.DictReader(open(tmp_path / "metrics.csv")) if r.get("train/loss")]
    assert len(rows) == 2  # logged once per epoch, not once per rank


@pytest.mark.slow
def test_ddp_matches_single_process_with_jacobian_and_svb(data_root, tmp_path):
    """2 ranks × batch 8 see the same samples per step as 1 process × batch 16 (rank r takes every 2nd index of
    the same order) and DDP averages their gradients, so with the exact Jacobian norm (no random projection),
    SVB projections and no dropout both runs end with the same model."""
    common = [
        "reg=[jacobian,svb]",
        "reg.jacobian.n_proj=-1",
        "reg.svb.every=2",
        "model.dropout=0",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=4",
        "trainer.limit_test_batches=1",
        "data.eval_batch_size=64",
    ]
    ddp = _cli(
        ["trainer=ddp", "trainer.devices=2", "data.batch_size=8", f"hydra.run.dir={tmp_path / 'ddp'}", *common],
        data_root,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = _cli(["data.batch_size=16", f"hydra.run.dir={tmp_path / 'single'}", *common], data_root)
    assert single.returncode == 0, single.stderr[-3000:]
    a = json.loads((tmp_path / "ddp" / "results.json").read_text())
    b = json.loads((tmp_path / "single" / "results.json").read_text())
    assert a["global_step"] == b["global_step"] == 4
    assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-4)
    assert a["metrics"]["train/jacobian"] == pytest.approx(b["metrics"]["train/jacobian"], rel=1e-4)
