"""regnet's SLURM path against a real single-node SLURM cluster (slurmctld + slurmd + munge on this machine, started
by .ci/slurm-cluster.sh): sweeps as job arrays, and preemption (a checkpoint at the step the job is on, a requeue,
the same result). Skipped without a cluster, failed without one where REGNET_REQUIRE_SLURM=1 (CI)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import QUIET, tiny, train_cli

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _cluster_missing() -> str | None:
    """Why no SLURM job can run here, or None when the cluster takes jobs."""
    if shutil.which("sinfo") is None:
        return "no SLURM client (sinfo) on this machine"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo got no answer from slurmctld within 20 s"
    states = out.stdout.split()
    if out.returncode != 0 or not any(s.rstrip("*") in ("idle", "mix", "alloc") for s in states):
        return f"no SLURM node takes jobs ({(out.stderr or out.stdout).strip() or 'no nodes'})"
    return None


@pytest.fixture(scope="module")
def slurm_cluster():
    """A SLURM cluster that takes jobs; without one the test is skipped, or fails where CI requires it."""
    reason = _cluster_missing()
    if reason:
        if os.environ.get("REGNET_REQUIRE_SLURM") == "1" or os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: start one with `sudo bash .ci/slurm-cluster.sh`", pytrace=False)
        pytest.skip(f"{reason} (sudo bash .ci/slurm-cluster.sh starts one)")


def _results(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/results.json")}


def test_a_sweep_is_one_job_array_a_bad_job_fails_alone_and_a_rerun_skips_the_done(slurm_cluster, data_root, tmp_path):
    """``-m hydra/launcher=slurm_cpu seed=0,1,-1``: one sbatch array of three tasks on the GPU-less partition, no
    other override; seed=-1 fails alone, named on stderr, and the sweep exits 2; the same command again skips the
    two completed runs (their results.json untouched) and fails the bad one again."""
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=slurm_cpu", "seed=0,1,-1", f"data.root={data_root}", *tiny(), *QUIET,
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    out = train_cli(args, data_root, timeout=400)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "seed=-1 is invalid" in out.stderr
    scripts = list(sweep.glob(".submitit/*/*_submission.sh"))
    assert len(scripts) == 1 and "#SBATCH --array=0-2%" in scripts[0].read_text()
    assert not re.search(r"--(gpus\S*|gres)=\S*[1-9]", scripts[0].read_text())  # no GPU asked for
    first = _results(sweep)
    assert sorted(r["status"] for r in first.values()) == ["completed", "completed", "invalid"]
    done = {k: r for k, r in first.items() if r["status"] == "completed"}
    assert all((sweep / k / "checkpoints" / "last.ckpt").is_file() and (sweep / k / "metrics.csv").is_file()
               for k in done)  # fmt: skip

    start = time.monotonic()
    again = train_cli(args, data_root, timeout=400)
    assert again.returncode == 2, again.stderr[-3000:]
    second = _results(sweep)
    assert {k: second[k] for k in done} == done  # skipped: the same record, wall_time_s included
    assert time.monotonic() - start < 300
