"""Checkpoints load weights-only everywhere regnet reads one; a hostile pickle is refused in one line.

The hostile checkpoint (tests/conftest.py ``malicious_checkpoint``) creates a marker file when unpickled with
``weights_only=False``: every test asserts the marker was never created and the refusal names the file.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from regnet.analyze import main as analyze_main
from regnet.checkpoints import UntrustedCheckpoint, load_checkpoint
from regnet.config import run_name
from regnet.results import LAST_CHECKPOINT
from tests.conftest import QUIET, compose_cfg, run_cli, tiny, write_malicious_checkpoint

# --- the loading function ---------------------------------------------------------------------------------


def test_the_hostile_checkpoint_really_runs_code_when_trusted(malicious_checkpoint):
    """The test's pickle is real: opting in (trust=True) unpickles it, and that creates the marker."""
    path, marker = malicious_checkpoint
    load_checkpoint(path, trust=True)
    assert marker.exists()


def test_load_checkpoint_refuses_in_one_line_naming_file_global_and_opt_in(malicious_checkpoint):
    path, marker = malicious_checkpoint
    with pytest.raises(UntrustedCheckpoint) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert not marker.exists()
    assert "\n" not in message
    assert str(path) in message and "getattr" in message and "trust_checkpoint=true" in message
    assert isinstance(info.value, ValueError)  # bad input: exit 2 on the command line
    assert "--trust-checkpoints" in str(UntrustedCheckpoint(path, "x", opt_in="--trust-checkpoints"))


def test_an_unknown_class_is_refused_by_name(tmp_path):
    path = tmp_path / "c.ckpt"
    torch.save({"state_dict": {}, "extra": pickle.PickleError("a class regnet never writes")}, path)
    with pytest.raises(UntrustedCheckpoint, match=r"pickle\.PickleError|_pickle\.PickleError"):
        load_checkpoint(path)


def test_weights_and_plain_values_load_weights_only(tmp_path):
    path = tmp_path / "ok.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "global_step": 3, "names": ["a"], "x": (1.5, None)}, path)
    loaded = load_checkpoint(path)
    assert loaded["global_step"] == 3 and torch.equal(loaded["state_dict"]["w"], torch.ones(2))


def test_a_corrupt_file_is_not_called_untrusted(tmp_path):
    """Trusting a truncated or garbage file would not make it loadable: its own error, not a refusal."""
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"garbage")
    with pytest.raises(Exception) as info:
        load_checkpoint(garbage)
    assert not isinstance(info.value, UntrustedCheckpoint)
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(100)}}, good)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(Exception) as info:
        load_checkpoint(truncated)
    assert not isinstance(info.value, UntrustedCheckpoint)


# --- a real trained run: what regnet writes loads weights-only; resume and ckpt_path= refuse a hostile one -----
@pytest.fixture
def trained_run(data_root, tmp_path, monkeypatch, capsys) -> Path:
    """A run directory trained by ``python -m regnet.train`` (in this process), 3 steps, logged by CSV and
    TensorBoard, with an LR schedule and momentum (their state is in the checkpoint)."""
    run_dir = tmp_path / "run"
    args = [f"data.root={data_root}", *tiny(), *QUIET, "logger=[csv,tensorboard]", f"hydra.run.dir={run_dir}"]
    code, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    return run_dir


def _hostile_copy_of(checkpoint: Path, marker: Path) -> None:
    """Replace ``checkpoint`` by itself plus a payload that creates ``marker`` when unpickled."""
    write_malicious_checkpoint(checkpoint, marker, base=torch.load(checkpoint, weights_only=True))


def test_a_trained_runs_checkpoint_loads_weights_only(trained_run):
    """Everything regnet.train writes (hyper-parameters, RNG states, callbacks', loops', optimizer's and
    scheduler's states, the logged metrics) is plain data: no allowlist needed."""
    checkpoint = torch.load(trained_run / LAST_CHECKPOINT, map_location="cpu", weights_only=True)
    assert {"state_dict", "optimizer_states", "lr_schedulers", "loops", "callbacks", "regnet_rng"} <= set(checkpoint)
    assert checkpoint["global_step"] == 3


def test_resuming_into_a_run_with_a_hostile_checkpoint_refuses_it(trained_run, data_root, monkeypatch, capsys):
    """The same command again in a run directory whose last.ckpt is hostile: exit 2, one line naming the file and
    the opt-in; the marker is never created and the checkpoint is neither set aside nor replaced."""
    last = trained_run / LAST_CHECKPOINT
    marker = trained_run.parent / "pwned"
    _hostile_copy_of(last, marker)
    (trained_run / "results.json").unlink()  # as if killed before its end: the command resumes it
    before = last.read_bytes()
    args = [f"data.root={data_root}", *tiny("trainer.max_epochs=2"), *QUIET, f"hydra.run.dir={trained_run}"]
    code, err = run_cli(args, monkeypatch, capsys)
    assert (code, marker.exists()) == (2, False), err
    (line,) = err.strip().splitlines()
    assert str(last) in line and "weights-only" in line and "trust_checkpoint=true" in line
    assert last.read_bytes() == before and not (trained_run / "checkpoints" / "last.ckpt.corrupt").exists()
    assert not (trained_run / "results.json").exists()
    # the user trusts it: the same command with trust_checkpoint=true unpickles it (the marker) and resumes
    code, err = run_cli([*args, "trust_checkpoint=true"], monkeypatch, capsys)
    assert code == 0, err
    assert marker.exists()
    results = json.loads((trained_run / "results.json").read_text())
    assert results["status"] == "completed" and results["resumed_from_step"] == 3


def test_lightnings_own_resume_loads_weights_only(trained_run, data_root, monkeypatch, capsys):
    """The second line of defence: a checkpoint swapped after regnet read its step (here regnet's read is made to
    see a plain one) is loaded by ``Trainer.fit`` weights-only too, even with torch's
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD set: the run fails and the marker is never created."""
    import regnet.lifecycle

    marker = trained_run.parent / "pwned"
    _hostile_copy_of(trained_run / LAST_CHECKPOINT, marker)
    (trained_run / "results.json").unlink()
    monkeypatch.setattr(regnet.lifecycle, "load_checkpoint", lambda path, trust=False: {"global_step": 3})
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    args = [f"data.root={data_root}", *tiny("trainer.max_epochs=2"), *QUIET, f"hydra.run.dir={trained_run}"]
    code, err = run_cli(args, monkeypatch, capsys)
    assert (code, marker.exists()) == (1, False), err
    assert "Weights only load failed" in err


def test_ckpt_path_to_a_hostile_checkpoint_is_refused(trained_run, data_root, tmp_path, monkeypatch, capsys):
    marker = tmp_path / "pwned"
    hostile = tmp_path / "shared" / "model.ckpt"
    hostile.parent.mkdir()
    hostile.write_bytes((trained_run / LAST_CHECKPOINT).read_bytes())
    _hostile_copy_of(hostile, marker)
    other = tmp_path / "other"
    args = [f"data.root={data_root}", *tiny(), *QUIET, f"hydra.run.dir={other}", f"ckpt_path={hostile}"]
    code, err = run_cli(args, monkeypatch, capsys)
    assert (code, marker.exists()) == (2, False), err
    (line,) = err.strip().splitlines()
    assert str(hostile) in line and "trust_checkpoint=true" in line
    assert not (other / "results.json").exists()


def test_in_a_sweep_the_refused_run_is_invalid_and_the_others_train(data_root, tmp_path, monkeypatch, capsys):
    """``-m seed=0,1`` where seed 0's directory holds a hostile last.ckpt (copied in, not finished): seed 1 trains,
    seed 0 records ``status: invalid`` with the refusal, the sweep exits 2 and the marker is never created."""
    sweep = tmp_path / "sweep"
    args = [f"data.root={data_root}", *tiny(), *QUIET, f"hydra.sweep.dir={sweep}"]
    assert run_cli(["-m", "seed=0", *args], monkeypatch, capsys)[0] == 0
    (first,) = [p.parent for p in sweep.glob("*/results.json")]
    marker = tmp_path / "pwned"
    _hostile_copy_of(first / LAST_CHECKPOINT, marker)
    (first / "results.json").unlink()
    code, err = run_cli(["-m", "seed=0,1", *args], monkeypatch, capsys)
    assert (code, marker.exists()) == (2, False), err
    results = {p.parent: json.loads(p.read_text()) for p in sweep.glob("*/results.json")}
    assert sorted(r["status"] for r in results.values()) == ["completed", "invalid"]
    assert results[first]["status"] == "invalid" and "weights-only" in results[first]["error"]


def test_trust_checkpoint_is_no_part_of_a_runs_name():
    ignored = compose_cfg(return_hydra_config=True).hydra.job.config.override_dirname.exclude_keys
    assert run_name(["seed=1", "trust_checkpoint=true"], ignored) == run_name(["seed=1"], ignored)
    assert compose_cfg().trust_checkpoint is False  # never on by default


# --- the stacked resume ---------------------------------------------------------------------------------------
def test_the_stacked_checkpoints_load_weights_only_and_a_hostile_stack_checkpoint_is_refused(data_root, tmp_path):
    from regnet.stacked.train import resolved, stack_dir_for, train_stack
    from regnet.train import bind_run_dir

    def member(run_dir, seed):
        cfg = compose_cfg([f"data.root={data_root}", *tiny("trainer.limit_train_batches=2"), *QUIET,
                           "experiment=hoffman2019_mnist", f"seed={seed}"], return_hydra_config=True)  # fmt: skip
        bind_run_dir(cfg, run_dir)
        return resolved(cfg)

    dirs = [tmp_path / "a" / str(i) for i in range(2)]
    results = train_stack([member(d, i) for i, d in enumerate(dirs)], dirs)
    assert [r["status"] for r in results] == ["completed"] * 2
    stack_last = stack_dir_for(dirs) / "checkpoints" / "last.ckpt"
    for path in [stack_last, *(d / LAST_CHECKPOINT for d in dirs)]:
        assert torch.load(path, map_location="cpu", weights_only=True)["global_step"] == 2

    dirs = [tmp_path / "b" / str(i) for i in range(2)]  # a stack to resume whose checkpoint was replaced
    marker = tmp_path / "pwned"
    hostile = stack_dir_for(dirs) / "checkpoints" / "last.ckpt"
    write_malicious_checkpoint(hostile, marker, base=torch.load(stack_last, weights_only=True))
    with pytest.raises(UntrustedCheckpoint, match="trust_checkpoint=true") as info:
        train_stack([member(d, i) for i, d in enumerate(dirs)], dirs)
    assert str(hostile) in str(info.value) and not marker.exists()
    assert not any((d / "results.json").exists() for d in dirs) and hostile.is_file()


# --- analysis ---------------------------------------------------------------------------------------------------
def test_analysis_lists_a_hostile_checkpoint_and_a_dangerous_config_and_goes_on(tiny_sweep, tmp_path, capsys):
    """A shared sweep: one run's last.ckpt is hostile, another's saved config builds ``subprocess.run``. Both are
    listed in problems.csv as unloadable (their accuracy still counts); neither marker is created; the other runs
    are analysed. With --trust-checkpoints the hostile checkpoint is unpickled (its marker), the config still not."""
    sweep = tmp_path / "sweep"
    shutil.copytree(tiny_sweep, sweep, ignore=shutil.ignore_patterns("out", "analysis"))
    runs = sorted(p.parent for p in sweep.rglob("results.json"))
    marker, config_marker = tmp_path / "pwned", tmp_path / "pwned_by_config"
    _hostile_copy_of(runs[0] / LAST_CHECKPOINT, marker)
    config = OmegaConf.load(runs[1] / ".hydra" / "config.yaml")
    config.model = {"_target_": "subprocess.run", "args": ["touch", str(config_marker)]}
    OmegaConf.save(config, runs[1] / ".hydra" / "config.yaml")
    argv = [str(sweep), "--planes", "1", "--zooms", "0.1", "--resolution", "8", "--no-cache"]
    assert analyze_main(argv) == 0
    assert not marker.exists() and not config_marker.exists()
    out = sweep / "analysis"
    assert pd.read_csv(out / "accuracy.csv")["n"].sum() == 4
    problems = pd.read_csv(out / "problems.csv").set_index("run_dir")
    assert set(problems.index) == {str(runs[0]), str(runs[1])} and (problems["status"] == "unloadable").all()
    refusal_reason = problems.loc[str(runs[0]), "reason"]
    assert str(runs[0] / LAST_CHECKPOINT) in refusal_reason and "--trust-checkpoints" in refusal_reason
    assert "subprocess.run" in problems.loc[str(runs[1]), "reason"]
    assert set(pd.read_csv(out / "tv_planes.csv")["run_dir"]) == {str(r) for r in runs[2:]}
    assert str(runs[0]) in capsys.readouterr().err

    assert analyze_main([*argv, "--trust-checkpoints"]) == 0
    assert marker.exists() and not config_marker.exists()
    problems = pd.read_csv(out / "problems.csv")
    assert list(problems["run_dir"]) == [str(runs[1])]


# --- nothing reads a checkpoint another way ---------------------------------------------------------------------
def test_every_checkpoint_read_in_regnet_is_weights_only():
    """A guard for code to come (an eval entry point, a new helper): in regnet/, ``torch.load`` is called only by
    regnet/checkpoints.py or with ``weights_only=True``, and every ``trainer.fit/validate/test/predict`` passes
    ``weights_only=`` (else Lightning leaves it to torch's default, which an environment variable can flip)."""
    import ast

    package = Path(__file__).resolve().parents[1] / "regnet"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            keywords = {k.arg: k.value for k in node.keywords}
            where = f"{path.relative_to(package.parent)}:{node.lineno}"
            owner = node.func.value
            if node.func.attr == "load" and isinstance(owner, ast.Name) and owner.id == "torch":
                only = keywords.get("weights_only")
                if path.name != "checkpoints.py" and not (isinstance(only, ast.Constant) and only.value is True):
                    offenders.append(f"{where}: torch.load without weights_only=True (use load_checkpoint)")
            if node.func.attr in ("fit", "validate", "test", "predict") and "trainer" in ast.unparse(owner).lower():
                if "weights_only" not in keywords:
                    offenders.append(f"{where}: {ast.unparse(node.func)}(...) without weights_only=")
    assert not offenders, offenders
