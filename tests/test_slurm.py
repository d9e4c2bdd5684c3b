"""regnet's SLURM path against a real single-node SLURM cluster (slurmctld + slurmd + munge on this machine, started
by .ci/slurm-cluster.sh): sweeps as job arrays, and preemption (a checkpoint at the step the job is on, a requeue,
the same result). Skipped without a cluster, failed without one where REGNET_REQUIRE_SLURM=1 (CI)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest

from regnet.signals import CheckpointAtSignal
from tests.conftest import QUIET, REPO, run_cli, tiny, train_cli
from tests.test_resume import _compared, _kill_args, one_thread, reference  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _cluster_missing() -> str | None:
    """Why no SLURM job can run here, or None when the cluster takes jobs."""
    if shutil.which("sinfo") is None:
        return "no SLURM client (sinfo) on this machine"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo got no answer from slurmctld within 20 s"
    states = out.stdout.split()  # comp: a node finishing another test's job (the suite runs these side by side)
    if out.returncode != 0 or not any(s.rstrip("*") in ("idle", "mix", "alloc", "comp") for s in states):
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


def _attempts(record: dict) -> list[tuple]:
    """(ended, reason, resumed_from_step, end_step, steps_redone) of each attempt in a run's record."""
    keys = ("ended", "reason", "resumed_from_step", "end_step", "steps_redone")
    return [tuple(a[k] for k in keys) for a in record["attempts"]]


def _by_seed(sweep: Path) -> dict[str, dict]:
    """The records of the sweep's runs by their seed override (``seed=1``), read from each run directory's name."""
    return {re.search(r"seed=-?\d+", k)[0]: r for k, r in _results(sweep).items()}


def _arrays(sweep: Path) -> dict[str, list[str]]:
    """The SLURM jobs submitit submitted for the sweep: each array's job id with its task ids (its folders)."""
    arrays: dict[str, list[str]] = {}
    for folder in sorted(sweep.glob(".submitit/[0-9]*_[0-9]*")):  # one per task (<job>_<task>)
        job, _, task = folder.name.partition("_")
        arrays.setdefault(job, []).append(task)
    return arrays


def test_a_sweep_is_one_job_array_a_bad_job_fails_alone_and_a_rerun_submits_only_the_unfinished(
    slurm_cluster, data_root, tmp_path, monkeypatch, capsys
):
    """``-m hydra/launcher=slurm_cpu seed=1,-1``: one sbatch array of two tasks on the GPU-less partition, no other
    override; seed=-1 fails alone, named on stderr, and the sweep exits 2. Then ``seed=0,1,2``: seed=1 is completed,
    so one array of two tasks (seeds 0 and 2) is submitted, and all three runs complete (exit 0); the same command
    again submits nothing and leaves every record as it was."""
    sweep = tmp_path / "sweep"
    common = [f"data.root={data_root}", *tiny(), *QUIET, f"hydra.sweep.dir={sweep}"]
    out = train_cli(["-m", "hydra/launcher=slurm_cpu", "seed=1,-1", *common], data_root, timeout=400)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "seed=-1 is invalid" in out.stderr
    (script,) = sweep.glob(".submitit/*/*_submission.sh")
    assert "#SBATCH --array=0-1%" in script.read_text()
    assert not re.search(r"--(gpus\S*|gres)=\S*[1-9]", script.read_text())  # no GPU asked for
    first = _by_seed(sweep)
    assert {k: r["status"] for k, r in first.items()} == {"seed=1": "completed", "seed=-1": "invalid"}
    (run_dir,) = [p for p in sweep.iterdir() if re.search(r"(^|,)seed=1(,|$)", p.name)]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "metrics.csv").is_file()
    (first_array,) = _arrays(sweep)

    args = ["-m", "hydra/launcher=slurm_cpu", "seed=0,1,2", *common]
    out = train_cli(args, data_root, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "1 of 3 runs already completed; submitting 2" in out.stdout
    arrays = _arrays(sweep)
    assert len(arrays) == 2 and sorted(arrays[next(a for a in arrays if a != first_array)]) == ["0", "1"]
    second = _by_seed(sweep)
    assert {k: r["status"] for k, r in second.items() if k != "seed=-1"} == dict.fromkeys(
        ["seed=0", "seed=1", "seed=2"], "completed"
    )
    assert second["seed=1"] == first["seed=1"]  # not trained again: the same record, wall_time_s included

    monkeypatch.setenv("REGNET_DATA", str(data_root))  # nothing to submit: in this process (no interpreter start)
    code, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err[-3000:]
    assert _arrays(sweep) == arrays and _by_seed(sweep) == second  # nothing submitted, nothing trained again


class WaitAtSteps(L.Callback):
    """In a SLURM job (``+callbacks.wait``): once the run reaches each step of ``steps``, it touches
    ``<ready>.<step>`` and waits (120 s at most) for the signal the test has SLURM send."""

    def __init__(self, ready: str, steps: list[int]):
        self.ready, self.steps = ready, list(steps)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step in self.steps:
            guard = next(cb.guard for cb in trainer.callbacks if isinstance(cb, CheckpointAtSignal))
            Path(f"{self.ready}.{trainer.global_step}").touch()
            deadline = time.monotonic() + 120
            while guard.received is None and time.monotonic() < deadline:
                time.sleep(0.05)


def _wait_for(what, predicate, timeout=240, proc=None):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        assert proc is None or proc.poll() is None, f"the sweep ended before {what}: {proc.communicate()[1][-3000:]}"
        time.sleep(0.2)
    return value


def _restarts(job: str) -> int:
    out = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True).stdout
    return int(m.group(1)) if (m := re.search(r"Restarts=(\d+)", out)) else -1


def _stop(job: str, *command: str) -> None:
    """``command`` (a signal or a requeue) to the job, then, once SLURM has requeued it, start it at once instead
    of after SLURM's requeue delay (BeginTime)."""
    before = _restarts(job)
    subprocess.run([*command, job], check=True)
    requeued = _wait_for(f"job {job} to be requeued", lambda: _restarts(job) > before and _state(job), 120)
    if requeued == "PENDING":  # not already started again
        time.sleep(2)  # a job started in the second of its requeue is killed: "Job credential revoked"
        subprocess.run(["scontrol", "update", f"jobid={job}", "starttime=now"], check=False, capture_output=True)


def _state(job: str) -> str | None:
    """PENDING or RUNNING; None while SLURM is still ending the attempt (COMPLETING)."""
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout.strip()
    return out if out in ("PENDING", "RUNNING") else None


def _stopped_sweep(args: list[str], env: dict, ready: Path, sweep: Path, stops: list[tuple[int, tuple, bool]]):
    """Run ``python -m regnet.train *args`` (a sweep of one SLURM job) and, when its run reaches each step of
    ``stops``, send the job that command (``("scancel", "--signal=USR2")``, ``("scontrol", "requeue")``) and, if
    the entry's flag says it is requeued, release it at once (:func:`_stop`); returns
    the job id, the sweep's exit code and its stderr once it has ended (the job is cancelled whatever happens)."""
    proc = subprocess.Popen([sys.executable, "-m", "regnet.train", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    job = None
    try:
        for step, command, requeued in stops:
            _wait_for(f"step {step}", lambda step=step: Path(f"{ready}.{step}").exists(), proc=proc)
            if job is None:
                job = _wait_for("the job", lambda: next(sweep.glob(".submitit/[0-9]*/*_submitted.pkl"), None))
                job = job.parent.name
            if requeued:
                _stop(job, *command)
            else:
                subprocess.run([*command, job], check=True)
        err = proc.communicate(timeout=300)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
        if job is not None:
            subprocess.run(["scancel", job], check=False)
    return job, proc.returncode, err


@pytest.mark.usefixtures("one_thread")
def test_preemption_and_requeue_checkpoint_the_step_and_the_requeued_job_ends_as_an_uninterrupted_run(
    slurm_cluster,
    data_root,
    tmp_path,
    reference,  # noqa: F811 (the fixture of tests/test_resume.py)
):
    """One SLURM job, stopped twice: the preemption signal (``scancel --signal=USR2``, submitit's) at step 17,
    then ``scontrol requeue`` (SIGTERM) at step 27. Each time the run writes last.ckpt at that step, records the
    attempt and the job is requeued (by submitit, then by SLURM); the third attempt resumes from step 27 and
    ends exactly as the run that never stopped. results.json lists the three attempts, 0 steps redone."""
    sweep, ready = tmp_path / "sweep", tmp_path / "ready"
    args = ["-m", "hydra/launcher=slurm_cpu", *_kill_args(data_root), f"hydra.sweep.dir={sweep}",
            "+callbacks.wait._target_=tests.test_slurm.WaitAtSteps", f"+callbacks.wait.ready={ready}",
            "+callbacks.wait.steps=[17,27]", "hydra.sweep.subdir=run"]  # fmt: skip
    env = {**os.environ, "REGNET_DATA": str(data_root), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    stops = [(17, ("scancel", "--signal=USR2"), True), (27, ("scontrol", "requeue"), True)]
    job, returncode, err = _stopped_sweep(args, env, ready, sweep, stops)
    assert returncode == 0, err[-3000:]
    (run_dir,) = [p.parent for p in sweep.glob("*/results.json")]
    got = json.loads((run_dir / "results.json").read_text())
    want = json.loads((reference / "results.json").read_text())
    assert _compared(got) == _compared(want)
    ended = _attempts(got)
    assert ended == [
        ("interrupted", "preemption (SIGUSR2)", None, 17, None),
        ("interrupted", "SIGTERM", 17, 27, 0),
        ("completed", None, 27, want["global_step"], 0),
    ]
    assert {a["slurm_job_id"] for a in got["attempts"]} == {job}  # one job, requeued twice


@pytest.mark.usefixtures("one_thread")
def test_a_plain_scancel_ends_the_sweep_naming_the_run_and_the_loggers_keep_one_run_across_a_requeue(
    slurm_cluster,
    data_root,
    tmp_path,
    monkeypatch,
    capsys,
    reference,  # noqa: F811 (the fixture of tests/test_resume.py)
):
    """One SLURM job logging to TensorBoard, MLflow (file store) and W&B (offline): the preemption signal at step 17
    (``scancel --signal=USR2``, submitit's; submitit requeues it), then a plain ``scancel`` at step 27 (SIGTERM,
    then SIGKILL after KillWait; no requeue). The run checkpoints at 27 and records ``interrupted``; the sweep, on a
    cluster without accounting (sacct fails), does not wait forever: it exits 1 naming the run. The same command
    resumes it from 27 and it ends exactly as the run that never stopped. Its three attempts logged into one
    TensorBoard directory and one MLflow run, each epoch once, and into one W&B run."""
    from tests.test_loggers import mlflow_runs, tensorboard_scalars, wandb_run

    sweep, ready = tmp_path / "sweep", tmp_path / "ready"
    args = ["-m", "hydra/launcher=slurm_cpu", *_kill_args(data_root), f"hydra.sweep.dir={sweep}",
            "hydra.sweep.subdir=run", "logger=[csv,tensorboard,wandb,mlflow]", f"paths.logs={tmp_path / 'outputs'}",
            "+callbacks.wait._target_=tests.test_slurm.WaitAtSteps", f"+callbacks.wait.ready={ready}",
            "+callbacks.wait.steps=[17,27]"]  # fmt: skip
    env = {**os.environ, "REGNET_DATA": str(data_root), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off",
           **{f"WANDB_{d}_DIR": str(tmp_path / f"wandb-{d.lower()}") for d in ("CONFIG", "CACHE", "DATA")}}  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)
    stops = [(17, ("scancel", "--signal=USR2"), True), (27, ("scancel",), False)]
    job, returncode, err = _stopped_sweep(args, env, ready, sweep, stops)
    run_dir = sweep / "run"
    assert returncode == 1, err[-3000:]
    assert f"run {run_dir} was interrupted (SIGTERM) at step 27" in err and "run the same command" in err
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "interrupted" and [a["end_step"] for a in record["attempts"]] == [17, 27]

    for name, value in env.items():  # the same command again, from this process (the job gets its environment)
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err[-3000:]
    got = json.loads((run_dir / "results.json").read_text())
    assert _compared(got) == _compared(json.loads((reference / "results.json").read_text()))
    ended = _attempts(got)
    assert ended == [
        ("interrupted", "preemption (SIGUSR2)", None, 17, None),
        ("interrupted", "SIGTERM", 17, 27, 0),
        ("completed", None, 27, 36, 0),
    ]

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # as regnet/loggers/mlflow.py sets it
    epochs = [11, 23, 35]  # each epoch's metrics, at the step of its last batch: by attempts 1, 2 and 3
    ids = json.loads((run_dir / "logger_runs.json").read_text())
    client, runs = mlflow_runs(tmp_path, "train")
    assert [r.info.run_id for r in runs] == [ids["mlflow"]] and runs[0].info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(ids["mlflow"], "train/loss")) == epochs
    assert [p.name for p in run_dir.glob("tensorboard*")] == ["tensorboard"]
    assert [e.step for e in tensorboard_scalars(run_dir / "tensorboard").Scalars("train/loss")] == epochs
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    column = rows[0].split(",").index("train/loss")
    assert [int(r.split(",")[1]) for r in rows[1:] if r.split(",")[column]] == epochs
    # W&B: one run id, each attempt an offline directory of that run. The attempt stopped by the preemption signal
    # finished its W&B run before submitit requeued the job: what it logged is there. What the attempt stopped by
    # scancel's SIGTERM logged is not: SLURM signals every process of the job, and W&B's service (wandb-core) exits
    # at SIGTERM without writing it (wandb/wandb#9963; docs/reliability.md). The last attempt logs the rest.
    attempts = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(attempts) == 3 and all(p.name.endswith(f"-{ids['wandb']}") for p in attempts)
    first, last = wandb_run(run_dir, 0), wandb_run(run_dir)
    assert first["id"] == last["id"] == ids["wandb"] and (first["exit"], last["exit"]) == (1, 0)
    for wandb_attempt, logged in ((first, epochs[:1]), (last, epochs[2:])):
        assert [row["trainer/global_step"] for row in wandb_attempt["history"] if "train/loss" in row] == logged


def test_the_stacked_launcher_submits_each_stack_as_one_slurm_job(slurm_cluster, data_root, tmp_path):
    """``-m hydra/launcher=stacked_slurm seed=0,1``: the two runs train as one stack in one SLURM job (no other
    override on the GPU-less partition); both members complete, each recording the stack it trained in; the same
    command again submits nothing and skips both."""
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=stacked_slurm", "seed=0,1", f"data.root={data_root}", *tiny(), *QUIET,
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    out = train_cli(args, data_root, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    scripts = list(sweep.glob(".submitit/*/*_submission.sh"))
    assert len(scripts) == 1 and "--job-name=stack" in scripts[0].read_text()  # one job for the stack
    records = _results(sweep)
    assert len(records) == 2 and {r["status"] for r in records.values()} == {"completed"}
    assert all(len(r["stacked"]["members"]) == 2 for r in records.values())
    again = train_cli(args, data_root, timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(list(sweep.glob(".submitit/*/*_submission.sh"))) == 1 and _results(sweep) == records


def test_a_preempted_stack_job_checkpoints_its_step_and_every_member_resumes_from_it(
    slurm_cluster, data_root, tmp_path
):
    """The stack's SLURM job gets the preemption signal at step 17: the stack writes its checkpoint there, every
    member records the attempt, submitit requeues the job, and the stack resumes from step 17 (0 steps redone)."""
    sweep, ready = tmp_path / "sweep", tmp_path / "ready"
    args = ["-m", "hydra/launcher=stacked_slurm", "seed=0,1", *_kill_args(data_root), f"hydra.sweep.dir={sweep}",
            "+callbacks.wait._target_=tests.test_slurm.WaitAtSteps", f"+callbacks.wait.ready={ready}",
            "+callbacks.wait.steps=[17]", "hydra.sweep.subdir=${hydra.job.num}"]  # fmt: skip
    env = {**os.environ, "REGNET_DATA": str(data_root), "PYTHONPATH": str(REPO)}
    _, returncode, err = _stopped_sweep(args, env, ready, sweep, [(17, ("scancel", "--signal=USR2"), True)])
    assert returncode == 0, err[-3000:]
    records = _results(sweep)
    assert sorted(records) == ["0", "1"]
    for record in records.values():
        ended = _attempts(record)
        assert ended == [
            ("interrupted", "preemption (SIGUSR2)", None, 17, None),
            ("completed", None, 17, 36, 0),
        ]


def test_time_limits_requeue_up_to_max_num_timeout_then_the_job_fails_and_the_same_command_resumes(
    slurm_cluster, data_root, tmp_path
):
    """A job with a 10-minute limit reads every USR2 as its time limit (submitit's rule: past 80 % of the limit, or
    10 minutes before its end). With ``max_num_timeout=1`` the first one (step 17) is requeued, the second (step
    27) is not: the job fails naming why, the sweep exits non-zero, the run stays ``interrupted`` with its
    checkpoint at 27; the same command resumes it from there and completes it."""
    sweep, ready = tmp_path / "sweep", tmp_path / "ready"
    args = ["-m", "hydra/launcher=slurm_cpu", "hydra.launcher.timeout_min=10", "hydra.launcher.max_num_timeout=1",
            *_kill_args(data_root), f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=run",
            "+callbacks.wait._target_=tests.test_slurm.WaitAtSteps", f"+callbacks.wait.ready={ready}",
            "+callbacks.wait.steps=[17,27]"]  # fmt: skip
    env = {**os.environ, "REGNET_DATA": str(data_root), "PYTHONPATH": str(REPO)}
    stops = [(17, ("scancel", "--signal=USR2"), True), (27, ("scancel", "--signal=USR2"), False)]
    _, returncode, err = _stopped_sweep(args, env, ready, sweep, stops)
    assert returncode != 0 and "not requeued" in err, err[-3000:]
    record = json.loads((sweep / "run" / "results.json").read_text())
    ended = [(a["ended"], a["reason"], a["resumed_from_step"], a["end_step"]) for a in record["attempts"]]
    assert record["status"] == "interrupted" and ended == [
        ("interrupted", "time limit (SIGUSR2)", None, 17),
        ("interrupted", "time limit (SIGUSR2)", 17, 27),
    ]

    again = subprocess.run([sys.executable, "-m", "regnet.train", *args], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=400)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    last = json.loads((sweep / "run" / "results.json").read_text())["attempts"][-1]
    assert (last["ended"], last["resumed_from_step"], last["steps_redone"]) == ("completed", 27, 0)


@pytest.mark.usefixtures("one_thread")
def test_a_plain_scancel_of_a_stack_job_ends_the_sweep_naming_its_members_and_the_same_command_resumes_them(
    slurm_cluster, data_root, tmp_path, monkeypatch, capsys
):
    """A plain ``scancel`` of the stack's SLURM job at step 17 (SIGTERM, no requeue) on a cluster without accounting:
    the stack checkpoints there, both members record ``interrupted``, and the sweep does not wait forever (submitit's
    ``result()`` asks sacct): it exits 1 naming both members. The same command resumes the stack from step 17 and
    completes both."""
    sweep, ready = tmp_path / "sweep", tmp_path / "ready"
    args = ["-m", "hydra/launcher=stacked_slurm", "seed=0,1", *_kill_args(data_root), f"hydra.sweep.dir={sweep}",
            "+callbacks.wait._target_=tests.test_slurm.WaitAtSteps", f"+callbacks.wait.ready={ready}",
            "+callbacks.wait.steps=[17]", "hydra.sweep.subdir=${hydra.job.num}"]  # fmt: skip
    env = {**os.environ, "REGNET_DATA": str(data_root), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    _, returncode, err = _stopped_sweep(args, env, ready, sweep, [(17, ("scancel",), False)])
    assert returncode == 1, err[-3000:]
    assert f"runs {sweep / '0'}, {sweep / '1'} were interrupted (SIGTERM) at step 17" in err, err[-3000:]
    assert "run the same command to resume them" in err
    assert {r["status"] for r in _results(sweep).values()} == {"interrupted"}

    monkeypatch.setenv("REGNET_DATA", str(data_root))  # the same command, from this process
    code, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err[-3000:]
    records = _results(sweep)
    assert sorted(records) == ["0", "1"]
    for record in records.values():
        ended = _attempts(record)
        assert ended == [("interrupted", "SIGTERM", None, 17, None), ("completed", None, 17, 36, 0)]
    assert len(list(sweep.glob(".submitit/[0-9]*"))) == 2  # the first job and the resuming one
