"""``python -m regnet.eval``: a real trained run evaluated through the real config, Trainer and attacks; its own
files hashed before and after; bad input and a hostile checkpoint refused in one line with exit code 2."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from regnet.eval import main, overrides_from
from regnet.train import train
from tests.conftest import QUIET, REPO, compose_cfg, tiny, write_malicious_checkpoint


@pytest.fixture(scope="module")
def trained_run(data_root, tmp_path_factory) -> Path:
    """A tiny LeNet/MNIST run, in a directory whose name holds '=' and ',' as run directories' names do."""
    run_dir = tmp_path_factory.mktemp("outputs") / "train" / "reg=l2,seed=1"
    overrides = [f"data.root={data_root}", "reg=l2", "seed=1", *QUIET, *tiny(), "trainer.limit_test_batches=null"]
    cfg = compose_cfg(overrides, return_hydra_config=True)  # tested on the whole test set, as eval tests
    assert train(cfg, run_dir)["status"] == "completed"
    return run_dir


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    """A fresh copy of the trained run (its config in results.json: trained in-process, it has no .hydra/)."""
    copy = tmp_path / "reg=l2,seed=1"
    shutil.copytree(trained_run, copy)
    return copy


def snapshot(directory: Path) -> dict[str, str]:
    """sha256 of every file below ``directory``."""
    return {
        p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def run_eval(args: list[str], capsys, monkeypatch, data_root) -> tuple[int, str, str]:
    monkeypatch.setenv("REGNET_DATA", str(data_root))
    capsys.readouterr()
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_of_a_run_dir_matches_its_training_and_changes_none_of_its_files(run_copy, data_root, capsys, monkeypatch):
    before = snapshot(run_copy)
    args = [str(run_copy), "attacks=[fgsm,pgd]", "eps=[0,0.1,0.5]", "n_test=32", "device=cpu"]
    code, out, err = run_eval(args, capsys, monkeypatch, data_root)
    assert code == 0, err
    after = snapshot(run_copy)
    (new,) = set(after) - set(before)
    assert new.startswith("eval-") and new.endswith(".json") and f"written to {run_copy / new}" in out
    assert {k: after[k] for k in before} == before  # the run's own files, byte for byte

    record = json.loads((run_copy / new).read_text())
    trained = json.loads((run_copy / "results.json").read_text())
    assert record["test"]["test/acc"] == pytest.approx(trained["test_acc"])  # the same weights on the same test set
    assert record["test"]["test/loss"] == pytest.approx(trained["test_loss"], rel=1e-5)
    assert record["run"]["seed"] == 1 and record["checkpoint"] == str(run_copy / "checkpoints" / "last.ckpt")
    rows = {(r["attack"], r["eps"]): r for r in record["attacks"]}
    assert rows[("fgsm", 0.0)]["acc"] == rows[("pgd", 0.0)]["acc"]  # ε = 0: both are the clean accuracy
    assert rows[("pgd", 0.5)]["acc"] <= rows[("pgd", 0.1)]["acc"] <= rows[("pgd", 0.0)]["acc"]
    assert rows[("pgd", 0.5)]["acc"] <= rows[("pgd", 0.5)]["acc_bound"] + 100 / 32  # above_bound passes: no flag
    assert rows[("pgd", 0.5)]["flag"] == "" and rows[("jacobian_fro", None)]["jacobian_fro"] > 0
    assert all(r["n_test"] == 32 for r in record["attacks"])

    code, _, err = run_eval([str(run_copy), "test=false", "device=cpu"], capsys, monkeypatch, data_root)
    assert code == 0, err  # a second evaluation: a second file, the first one kept
    assert len(list(run_copy.glob("eval-*.json"))) == 2 and snapshot(run_copy)[new] == after[new]


def test_ckpt_path_alone_finds_its_run_and_out_writes_elsewhere(run_copy, data_root, tmp_path, capsys, monkeypatch):
    before = snapshot(run_copy)
    out = tmp_path / "elsewhere" / "eval.json"
    ckpt = run_copy / "checkpoints" / "last.ckpt"
    code, _, err = run_eval([f"ckpt_path={ckpt}", f"out={out}", "device=cpu"], capsys, monkeypatch, data_root)
    assert code == 0, err
    assert snapshot(run_copy) == before  # nothing new in the run directory either
    record = json.loads(out.read_text())
    assert record["run_dir"] == str(run_copy) and record["attacks"] == [] and 0 <= record["test"]["test/acc"] <= 1
    code, _, err = run_eval([f"ckpt_path={ckpt}", f"out={out}"], capsys, monkeypatch, data_root)
    assert code == 2 and "exists" in err and json.loads(out.read_text()) == record  # never overwritten


def test_path_values_are_quoted_for_hydra():
    assert overrides_from(["outputs/train/reg=l2,seed=1", "attacks=[pgd]"]) == [
        'run_dir="outputs/train/reg=l2,seed=1"',
        "attacks=[pgd]",
    ]
    assert overrides_from(["ckpt_path=a=b,c/last.ckpt"]) == ['ckpt_path="a=b,c/last.ckpt"']
    with pytest.raises(ValueError, match="one run directory at a time"):
        overrides_from(["run_a", "run_b"])


@pytest.mark.parametrize(
    "case, expected",
    [
        ("no_such_dir", "is not a directory"),
        ("not_a_run", "is not a run directory"),
        ("no_checkpoint", "has no checkpoint"),
        ("ckpt_not_a_file", "is not a file"),
        ("nothing", "nothing to evaluate"),
        ("unknown_attack", "attacks: 'pgdd' is unknown"),
        ("typo_key", "unknown config key 'atacks'"),
        ("bad_device", "device=cuda:99 is unavailable"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_and_writes_nothing(case, expected, run_copy, data_root, capsys, monkeypatch):
    (run_copy.parent / "empty").mkdir()
    no_ckpt = run_copy.parent / "no_ckpt"
    shutil.copytree(run_copy, no_ckpt, ignore=shutil.ignore_patterns("checkpoints"))
    args = {
        "no_such_dir": [str(run_copy.parent / "missing")],
        "not_a_run": [str(run_copy.parent / "empty")],
        "no_checkpoint": [str(no_ckpt)],
        "ckpt_not_a_file": [str(run_copy), f"ckpt_path={run_copy / 'checkpoints'}"],
        "nothing": [],
        "unknown_attack": [str(run_copy), "attacks=[pgdd]"],
        "typo_key": [str(run_copy), "atacks=[pgd]"],
        "bad_device": [str(run_copy), "device=cuda:99"],
    }[case]
    before = snapshot(run_copy.parent)
    code, out, err = run_eval(args, capsys, monkeypatch, data_root)
    assert code == 2
    assert err.startswith("regnet: ") and expected in err and len(err.strip().splitlines()) == 1
    assert snapshot(run_copy.parent) == before and out == ""


def test_untrusted_checkpoint_is_refused_unless_trusted(run_copy, data_root, tmp_path, capsys, monkeypatch):
    """A checkpoint whose unpickling runs code: weights-only refuses it (one line naming the opt-in, nothing run,
    nothing written); ``trust_checkpoint=true`` unpickles it in full and evaluates it."""
    ckpt = run_copy / "checkpoints" / "last.ckpt"
    marker = tmp_path / "pwned"
    write_malicious_checkpoint(ckpt, marker, base=torch.load(ckpt, map_location="cpu", weights_only=True))
    before = snapshot(run_copy)
    code, _, err = run_eval([str(run_copy), "device=cpu"], capsys, monkeypatch, data_root)
    assert code == 2 and "trust_checkpoint=true" in err and str(ckpt) in err and len(err.strip().splitlines()) == 1
    assert not marker.exists() and snapshot(run_copy) == before
    code, _, err = run_eval([str(run_copy), "device=cpu", "trust_checkpoint=true"], capsys, monkeypatch, data_root)
    assert code == 0, err
    assert marker.exists() and len(list(run_copy.glob("eval-*.json"))) == 1


def test_the_command_line_exits_2_in_one_line(tmp_path):
    """The process boundary: ``python -m regnet.eval`` itself, on a directory that is not a run."""
    proc = subprocess.run([sys.executable, "-m", "regnet.eval", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"regnet: {tmp_path} is not a run directory (neither .hydra/config.yaml nor " \
        "results.json): the model is rebuilt from its run's config; with ckpt_path=, give run_dir= its run"  # fmt: skip
