"""Optuna searches (regnet's own sweeper over Optuna's ask/tell API): every trial an ordinary run on the configured
launcher, the study in a real SQLite storage under the sweep directory so that an interrupted search resumes, failed
trials recorded with their reason, pruning on the per-epoch validation metric, the best parameters in
optimization_results.yaml; the objective a validation metric, never the test set."""

from __future__ import annotations

import json
import sys

import optuna
import pytest
from omegaconf import OmegaConf

from regnet.hparams_search import objective_value
from regnet.hparams_search.space import quoted, search_space
from regnet.hparams_search.storage import absolute_url, open_storage
from regnet.hparams_search.sweeper import OptunaSearch, SearchFailed, make_pruner, make_sampler
from regnet.train import main, train
from tests.conftest import QUIET, REPO, compose_cfg, tiny
from tests.conftest import run_cli as command
from tests.test_slurm import slurm_cluster  # noqa: F401  (the fixture: a cluster that takes jobs)

LAM = "reg.jacobian.lam"
STUDY = "hoffman2019_mnist_jacobian_lam"


def run_cli(monkeypatch, *args: str) -> None:
    """``python -m regnet.train -m ...`` in this process (errors raised, not reported)."""
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    monkeypatch.setattr(sys, "argv", ["regnet.train", "-m", *args])
    main()


def trial_runs(sweep):
    return {
        float(json.loads(p.read_text())["config"]["reg"]["jacobian"]["lam"]): json.loads(p.read_text())
        for p in sweep.glob("*/results.json")
    }


def test_search_maximises_validation_accuracy_and_resumes_an_interrupted_study(data_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "search"
    args = ["hparams_search=jacobian_lam", f"data.root={data_root}", *tiny(), f"hydra.sweep.dir={sweep}"]
    run_cli(monkeypatch, *args, "hydra.sweeper.n_trials=1")

    storage = f"sqlite:///{sweep / 'optuna.db'}"
    study = optuna.load_study(study_name="hoffman2019_mnist_jacobian_lam", storage=storage)
    (first,) = study.trials
    (run,) = trial_runs(sweep).values()  # the trial is the run of its λ, valued by its validation accuracy
    assert first.state.name == "COMPLETE" and run["status"] == "completed"
    assert first.value == run["metrics"]["val/acc"] == run["val_acc"] and "test/acc" in run["metrics"]
    assert run["config"]["reg"]["jacobian"]["lam"] == first.params[LAM] and 1e-4 <= first.params[LAM] <= 1.0
    assert run["config"]["data"]["val_fraction"] == 0.1 and run["config"]["objective"] == "val/acc"
    assert run["variant"] == "jacobi" and run["reg"] == ["jacobian"]
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert best.best_value == first.value and best.best_params[LAM] == first.params[LAM]

    # the search is interrupted while trial 0's parameters run again (its run is complete: the controller died
    # before recording it): that trial stays RUNNING in the study
    study.enqueue_trial({LAM: first.params[LAM]})
    stale = study.ask()
    stale.suggest_float(LAM, 1e-4, 1.0, log=True)

    run_cli(monkeypatch, *args, "hydra.sweeper.n_trials=2")  # the same search, now of 2 trials: 1 to go
    study = optuna.load_study(study_name="hoffman2019_mnist_jacobian_lam", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    again = study.trials[-1]
    assert again.params == first.params and again.value == first.value  # asked again, answered by its run
    (same,) = trial_runs(sweep).values()
    assert same["wall_time_s"] == run["wall_time_s"]  # skipped, not retrained


def test_robustness_search_records_pgd_accuracy_on_the_validation_split(data_root, tmp_path):
    clean = [
        "+callbacks.clean._target_=regnet.callbacks.val_pgd.ValidationPGD",
        "+callbacks.clean.eps=0",
        "+callbacks.clean.name=pgd0_acc",
    ]  # ε = 0: PGD accuracy is the clean accuracy
    cfg = compose_cfg(
        ["hparams_search=jacobian_lam_pgd", f"data.root={data_root}", *tiny(), *clean, "callbacks.val_pgd.eps=0.3"],
        return_hydra_config=True,
    )
    results = train(cfg, tmp_path)
    metrics = results["metrics"]
    assert metrics["val/pgd0_acc"] == pytest.approx(metrics["val/acc"])
    assert metrics["val/pgd_acc"] < metrics["val/acc"]  # the attack lowers accuracy
    assert objective_value(cfg, results) == metrics["val/pgd_acc"]
    assert cfg.hydra.sweeper.direction == "maximize" and cfg.objective == "val/pgd_acc"


def test_search_without_a_validation_split_stops_before_training(data_root, tmp_path, monkeypatch):
    sweep = tmp_path / "search"
    with pytest.raises(ValueError, match="needs a validation split"):
        run_cli(
            monkeypatch,
            "hparams_search=jacobian_lam",
            "data.val_fraction=0",
            f"data.root={data_root}",
            f"hydra.sweep.dir={sweep}",
        )
    assert not list(sweep.glob("*/results.json"))


def test_objective_is_the_configured_metric_and_its_absence_an_error():
    cfg = compose_cfg(["objective=val/acc"])
    assert objective_value(cfg, {"status": "completed", "metrics": {"val/acc": 0.5, "test/acc": 0.9}}) == 0.5
    assert objective_value(compose_cfg(), {"status": "completed", "metrics": {"test/acc": 0.9}}) == 0.9
    with pytest.raises(ValueError, match="data.val_fraction"):
        objective_value(cfg, {"status": "completed", "metrics": {"test/acc": 0.9}})
    assert objective_value(cfg, {"status": "running elsewhere"}) is None


def search_args(data_root, sweep, *extra: str) -> list[str]:
    return ["hparams_search=jacobian_lam", f"data.root={data_root}", *tiny(), f"hydra.sweep.dir={sweep}", *extra]


def test_failed_trials_are_recorded_with_their_reason_and_the_search_goes_on(data_root, tmp_path, monkeypatch, capsys):
    """Trial 0 stops before its first validation (trainer.max_steps=2 of 3 batches): no objective, FAIL with that
    reason; trial 1 trains its epoch and completes; the last line counts the failure."""
    sweep = tmp_path / "search"
    sweep.mkdir()
    storage = f"sqlite:///{sweep / 'optuna.db'}"
    study = optuna.create_study(study_name=STUDY, storage=storage, direction="maximize")
    study.enqueue_trial({LAM: 0.01, "trainer.max_steps": 2})
    study.enqueue_trial({LAM: 0.02, "trainer.max_steps": -1})
    run_cli(monkeypatch, *search_args(data_root, sweep, "trainer.max_steps=choice(2,-1)", "hydra.sweeper.n_trials=2"))

    study = optuna.load_study(study_name=STUDY, storage=storage)
    failed, done = study.trials
    assert (failed.state.name, done.state.name) == ("FAIL", "COMPLETE")
    assert failed.params == {LAM: 0.01, "trainer.max_steps": 2}
    assert "objective=val/acc is not among the run's metrics" in failed.user_attrs["fail_reason"]
    assert "trainer.max_steps" in failed.user_attrs["fail_reason"]
    assert done.value == trial_runs(sweep)[0.02]["metrics"]["val/acc"]
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert best.best_params[LAM] == 0.02 and best.n_failed == 1 and best.n_complete == 1
    assert "val/acc" in best.failed[0]
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "2 trials, 1 complete, 0 pruned, 1 failed" in last and "best val/acc" in last


def test_a_search_without_a_completed_trial_says_so_in_one_line_and_exits_1(data_root, tmp_path, monkeypatch, capsys):
    """The issue's command, shrunk: every trial stops before validation; the search ends in one line, exit 1."""
    sweep = tmp_path / "search"
    args = search_args(data_root, sweep, "trainer.max_steps=2", "hydra.sweeper.n_trials=2")
    code, err = command(["-m", *args], monkeypatch, capsys)
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("regnet: search hoffman2019_mnist_jacobian_lam: 2 trials, 0 complete, 0 pruned, 2 failed")
    assert "no trial completed" in last and "val/acc" in last
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]
    assert OmegaConf.load(sweep / "optimization_results.yaml").n_failed == 2
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(SearchFailed):  # run again: the search is complete (2 of 2), nothing trains
        run_cli(monkeypatch, *args)
    assert len(optuna.load_study(study_name=STUDY, storage=f"sqlite:///{sweep / 'optuna.db'}").trials) == 2


def test_pruning_on_the_validation_metric_across_a_process_boundary(data_root, tmp_path, monkeypatch):
    """Trials on submitit's local executor (another process) report val/acc per epoch to the study; a pruner that
    prunes any value (ThresholdPruner, lower=1.01) stops the run after its first epoch of 3 and the trial is PRUNED;
    a search with no completed trial fails. The sweep directory is relative and the job changes into its run
    directory (hydra.job.chdir): the job still finds the study, at the absolute path the sweeper hands it."""
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "search"
    args = search_args(data_root, "search", "trainer.max_epochs=3", "hydra.sweeper.n_trials=1",
                       "hydra/launcher=submitit_cpu", "hydra.sweeper.pruner.name=threshold",
                       "+hydra.sweeper.pruner.lower=1.01", "hydra.job.chdir=true")  # fmt: skip
    with pytest.raises(SearchFailed, match="1 trials, 0 complete, 1 pruned, 0 failed: no trial completed$"):
        run_cli(monkeypatch, *args)
    (trial,) = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{sweep / 'optuna.db'}").trials
    (run,) = trial_runs(sweep).values()
    assert trial.state.name == "PRUNED" and trial.user_attrs["pruned"].startswith("epoch 0: val/acc=")
    assert trial.intermediate_values == {0: pytest.approx(run["metrics"]["val/acc"])}
    assert run["epochs"] == 1 and run["max_epochs"] == 3  # stopped early, then tested as usual


def test_stacked_trials_report_each_member_to_its_own_trial_and_are_pruned(data_root, tmp_path, monkeypatch):
    """hydra/launcher=stacked trains the batch's two trials as one stack: member s reports its own m<s>/val/loss to
    its trial after each epoch. A pruner that prunes any loss (ThresholdPruner, upper=0) prunes both members at
    epoch 0: each trial is PRUNED with its own member's value, and the stack stops there (1 epoch of 3)."""
    sweep = tmp_path / "search"
    args = search_args(data_root, sweep, "hydra/launcher=stacked", "trainer.max_epochs=3", "hydra.sweeper.n_trials=2",
                       "hydra.sweeper.n_jobs=2", "objective=val/loss", "hydra.sweeper.direction=minimize",
                       "hydra.sweeper.pruner.name=threshold", "+hydra.sweeper.pruner.upper=0")  # fmt: skip
    with pytest.raises(SearchFailed, match="2 trials, 0 complete, 2 pruned, 0 failed: no trial completed$"):
        run_cli(monkeypatch, *args)
    trials = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{sweep / 'optuna.db'}").trials
    runs = trial_runs(sweep)
    assert len(trials) == len(runs) == 2
    for trial in trials:
        run = runs[trial.params[LAM]]
        assert run["stacked"]["members"] and len(run["stacked"]["members"]) == 2  # trained as one stack
        assert trial.state.name == "PRUNED" and trial.user_attrs["pruned"].startswith("epoch 0: val/loss=")
        assert trial.intermediate_values == {0: pytest.approx(run["metrics"]["val/loss"], rel=1e-6)}
        assert run["status"] == "completed" and run["epochs"] == 1 and run["max_epochs"] == 3
    assert trials[0].intermediate_values[0] != trials[1].intermediate_values[0]  # each its own member's


@pytest.mark.slurm
@pytest.mark.slow
def test_search_trials_run_as_slurm_jobs_report_to_the_study_and_the_same_command_resumes(
    slurm_cluster,  # noqa: F811 (tests/test_slurm.py's fixture)
    data_root,
    tmp_path,
    monkeypatch,
):
    """``-m hparams_search=jacobian_lam hydra/launcher=slurm_cpu hydra.sweeper.n_jobs=2`` on the real cluster, the
    sweep directory relative and every job changing into its run directory (hydra.job.chdir): the batch of two
    trials is one SLURM array. Trial 0 stops before validation and is FAILED with its one-line reason; trial 1
    reports val/acc after each epoch from its job to the study and is pruned at epoch 1 (ThresholdPruner,
    lower=1.01, after 1 warm-up epoch), its run stopping there (2 epochs of 3). The search ends with no completed
    trial (exit 1 from the command line) after writing optimization_results.yaml; the same command again resumes
    the study: nothing is left to run and nothing is submitted. (Two trials: the cluster's node runs two 1-CPU
    tasks at once; a third would be a second round of jobs, each ~20 s on this machine; a completed trial's value
    and the best parameters are checked without SLURM above.)"""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the jobs (SLURM exports this environment) import this tree
    sweep = tmp_path / "search"
    sweep.mkdir()
    storage = f"sqlite:///{sweep / 'optuna.db'}"
    study = optuna.create_study(study_name=STUDY, storage=storage, direction="maximize")
    study.enqueue_trial({LAM: 0.01, "trainer.max_steps": 2, "trainer.max_epochs": 1})  # 2 steps: no validation
    study.enqueue_trial({LAM: 0.02, "trainer.max_steps": -1, "trainer.max_epochs": 3})
    args = search_args(data_root, "search", *QUIET, "hydra/launcher=slurm_cpu", "hydra.job.chdir=true",
                       "trainer.max_steps=choice(2,-1)", "trainer.max_epochs=choice(1,3)", "hydra.sweeper.n_trials=2",
                       "hydra.sweeper.n_jobs=2", "hydra.sweeper.pruner.name=threshold",
                       "+hydra.sweeper.pruner.lower=1.01", "+hydra.sweeper.pruner.n_warmup_steps=1")  # fmt: skip
    last_line = "2 trials, 0 complete, 1 pruned, 1 failed: no trial completed \\(trial 0: objective=val/acc is not"
    with pytest.raises(SearchFailed, match=last_line):
        run_cli(monkeypatch, *args)
    (script,) = sweep.glob(".submitit/*/*_submission.sh")
    assert "#SBATCH --array=0-1%" in script.read_text()  # the batch: one job array
    failed, pruned = optuna.load_study(study_name=STUDY, storage=storage).trials
    assert failed.state.name == "FAIL" and "objective=val/acc is not among" in failed.user_attrs["fail_reason"]
    assert pruned.state.name == "PRUNED" and pruned.user_attrs["pruned"].startswith("epoch 1: val/acc=")
    run = trial_runs(sweep)[0.02]
    assert sorted(pruned.intermediate_values) == [0, 1]  # from the job, epoch by epoch; epoch 0 warm-up
    assert pruned.intermediate_values[1] == pytest.approx(run["metrics"]["val/acc"])
    assert run["epochs"] == 2 and run["max_epochs"] == 3 and run["attempts"][-1]["slurm_job_id"]
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    assert (results.n_complete, results.n_pruned, results.n_failed) == (0, 1, 1) and "val/acc" in results.failed[0]

    (sweep / "optimization_results.yaml").unlink()
    with pytest.raises(SearchFailed, match=last_line):
        run_cli(monkeypatch, *args)  # the same command: the study has its 2 trials, nothing runs
    assert len(list(sweep.glob(".submitit/*/*_submission.sh"))) == 1
    assert len(optuna.load_study(study_name=STUDY, storage=storage).trials) == 2
    assert OmegaConf.load(sweep / "optimization_results.yaml") == results


def test_search_space_from_hydra_sweep_syntax():
    params = {LAM: "tag(log, interval(1e-4, 1.0))", "optim.lr": "interval(0.01, 0.1)"}
    space, fixed = search_space(params, ["data.batch_size=range(16, 65, 16)", "model=lenet,small_cnn", "seed=3",
                                         "optim.momentum=interval(0, 1)", "optim.lr=0.05"])  # fmt: skip
    assert space[LAM] == optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)
    assert space["data.batch_size"] == optuna.distributions.IntDistribution(16, 64, step=16)
    assert space["model"] == optuna.distributions.CategoricalDistribution(["lenet", "small_cnn"])
    assert space["optim.momentum"] == optuna.distributions.FloatDistribution(0.0, 1.0)  # Hydra's interval: floats
    assert "optim.lr" not in space and fixed == ["seed=3", "optim.lr=0.05"]  # the command line wins


@pytest.mark.parametrize("name", ["tpe", "random", "cmaes"])
def test_samplers_search_the_space(name):
    """TPE (default), random and CMA-ES each propose values inside the space through ask/tell."""
    sampler = make_sampler({"name": name, "seed": 0})
    assert type(sampler).__name__ == {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler"}[name]
    study = optuna.create_study(sampler=sampler, direction="maximize")
    space = {"x": optuna.distributions.FloatDistribution(-1.0, 1.0), "n": optuna.distributions.IntDistribution(1, 8)}
    for _ in range(12):
        trial = study.ask(fixed_distributions=space)
        study.tell(trial, -((trial.params["x"] - 0.5) ** 2) + trial.params["n"] / 100)
    assert all(-1 <= t.params["x"] <= 1 and 1 <= t.params["n"] <= 8 for t in study.trials)
    assert len({t.params["x"] for t in study.trials}) == 12


def test_unknown_sampler_or_pruner_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="sampler.name=grid is unknown: use one of tpe, random, cmaes"):
        make_sampler({"name": "grid"})
    with pytest.raises(ValueError, match="pruner.name=early is unknown"):
        make_pruner({"name": "early"})
    assert make_pruner({"name": "none"}) is None
    assert type(make_pruner({"name": "median", "n_warmup_steps": 2})).__name__ == "MedianPruner"
    # pruning without a storage: the trials' jobs would have nowhere to report (an in-memory study is this
    # process's only)
    cfg = compose_cfg(["hparams_search=jacobian_lam", f"hydra.sweep.dir={tmp_path}", "hydra.sweeper.storage=null",
                       "hydra.sweeper.pruner.name=median"], return_hydra_config=True)  # fmt: skip
    with pytest.raises(ValueError, match="hydra.sweeper.pruner needs a storage the trials' jobs report to"):
        OptunaSearch(cfg, None, OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)).run([])


def test_the_study_storage_handed_to_the_jobs_is_absolute(tmp_path, monkeypatch):
    """A relative SQLite path is made absolute against the directory the search starts from; other URLs are kept;
    the override that hands it to a job parses back to the same URL (commas, spaces and quotes in the path)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    monkeypatch.chdir(tmp_path)
    url = absolute_url("sqlite:///out/a b,c'd/optuna.db")
    assert url == f"sqlite:///{tmp_path}/out/a b,c'd/optuna.db".replace(",", "%2C").replace("'", "%27")
    assert absolute_url("sqlite:////abs/optuna.db") == "sqlite:////abs/optuna.db"
    assert absolute_url("postgresql://u:p@host/db") == "postgresql://u:p@host/db" and absolute_url(None) is None
    (override,) = OverridesParser.create().parse_overrides([f"++hydra.job.env_set.X={quoted(url)}"])
    assert override.value() == url
    study = optuna.create_study(study_name="s", storage=open_storage(url))  # its folder is created
    assert (tmp_path / "out" / "a b,c'd" / "optuna.db").is_file() and study.study_name == "s"


def test_stacked_members_hand_the_search_its_objective_not_the_test_accuracy():
    """hydra/launcher=stacked returns what the ordinary job returns: metrics[objective] (val/acc in a search), and a
    completed member without it is a failed job, as for any launcher."""
    from hydra.core.utils import JobReturn, JobStatus

    from regnet.stacked.launcher import _job_return

    cfg = compose_cfg(["objective=val/acc", "data.val_fraction=0.1"])
    ret = _job_return(JobReturn(), {"status": "completed", "test_acc": 0.9, "metrics": {"val/acc": 0.6}}, cfg)
    assert ret.status == JobStatus.COMPLETED and ret.return_value == 0.6
    ret = _job_return(JobReturn(), {"status": "completed", "test_acc": 0.9, "metrics": {"test/acc": 0.9}}, cfg)
    assert ret.status == JobStatus.FAILED and "objective=val/acc is not among" in str(ret._return_value)
    assert (
        _job_return(JobReturn(), {"status": "completed", "metrics": {"test/acc": 0.9}}, compose_cfg()).return_value
        == 0.9
    )


@pytest.mark.parametrize("stopped", ["Interrupted", "JobInterrupted"])
def test_a_signal_that_stops_the_trials_stops_the_search_and_the_same_command_resumes_them(stopped, tmp_path):
    """A launcher whose jobs a signal stopped returns them FAILED with Interrupted (submitit's jobs) or
    JobInterrupted (joblib's workers): the search stops there, and its trial, still RUNNING, is asked again when
    the study resumes."""
    from hydra.core.utils import JobReturn, JobStatus

    from regnet.hparams_search.sweeper import resume_study
    from regnet.signals import Interrupted, JobInterrupted

    error = Interrupted(15, step=3) if stopped == "Interrupted" else JobInterrupted("run", 15, "interrupted")

    class StoppedLauncher:
        def launch(self, overrides, initial_job_idx):
            return [JobReturn(_return_value=error, status=JobStatus.FAILED) for _ in overrides]

    cfg = compose_cfg(["hparams_search=jacobian_lam", f"hydra.sweep.dir={tmp_path}"], return_hydra_config=True)
    settings = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    with pytest.raises(type(error)):
        OptunaSearch(cfg, StoppedLauncher(), settings).run([])
    study = optuna.load_study(study_name=STUDY, storage=settings["storage"])
    (trial,) = study.trials
    assert trial.state.name == "RUNNING" and not (tmp_path / "optimization_results.yaml").exists()
    assert resume_study(study) == 0  # failed and enqueued again: asked first next time
    assert study.ask().params == {} and study.trials[-1].system_attrs.get("fixed_params") == trial.params


def test_a_search_without_the_search_extra_stops_in_one_line(tmp_path):
    """Without Optuna (``pip install -e .`` only) the search says which extra it needs: one line, exit 2."""
    import os
    import subprocess

    from tests.conftest import REPO

    code = (
        "import sys; sys.modules['optuna'] = None\n"  # as if regnet[search] were not installed
        f"sys.argv = ['regnet.train', '-m', 'hparams_search=jacobian_lam', 'hydra.sweep.dir={tmp_path / 'sweep'}']\n"
        "from regnet.cli import command_line; from regnet.train import main\nwith command_line(): main()"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "REGNET_FULL_ERROR")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env | {"PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["regnet: hparams_search needs Optuna: pip install 'regnet[search]'"]
    assert not (tmp_path / "sweep").exists()
