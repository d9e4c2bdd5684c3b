"""Optuna searches (hydra-optuna-sweeper): every trial an ordinary run, the study in SQLite under the sweep
directory so that an interrupted search resumes, the best parameters in optimization_results.yaml; the
objective a validation metric, never the test set."""

from __future__ import annotations

import json
import sys

import optuna
import pytest
from omegaconf import OmegaConf

from regnet.hparams_search import objective_value
from regnet.train import main, train
from tests.conftest import compose_cfg, tiny

LAM = "reg.jacobian.lam"


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
