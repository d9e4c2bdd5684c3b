"""Finding runs in a sweep (failed, missing, corrupt ones listed) and the analyze CLI end to end."""

import json
import math

import pandas as pd
import pytest
import torch

from regnet.analysis import NoRunsError, accuracy_table, default_device, find_runs, load_run
from regnet.analysis import test_inputs as pixel_test_inputs
from regnet.analyze import main


def fake_run(root, name, variant, seed, acc, status="completed"):
    d = root / name
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(
        {"status": status, "model": "lenet", "data": "mnist", "reg": [], "variant": variant, "seed": seed,
         "test_acc": acc if status == "completed" else None}))  # fmt: skip
    return d


def fabricated(tmp_path):
    for s, acc in enumerate([0.987, 0.986, 0.988]):
        fake_run(tmp_path, f"no_reg_{s}", "no_reg", s, acc)
    for s, acc in enumerate([0.991, 0.992, 0.990]):
        fake_run(tmp_path, f"l2_{s}", "l2", s, acc)
    fake_run(tmp_path, "l2_3", "l2", 3, None, status="diverged")
    fake_run(tmp_path, "svb_0", "svb", 0, None, status="failed")
    (tmp_path / "svb_1" / ".hydra").mkdir(parents=True)  # started, never finished: missing
    (tmp_path / "svb_1" / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (tmp_path / "svb_2").mkdir()
    (tmp_path / "svb_2" / "results.json").write_text('{"status": "compl')  # corrupt
    return tmp_path


def test_sweep_lists_failed_missing_and_corrupt_runs(tmp_path):
    sweep = find_runs(fabricated(tmp_path))
    assert len(sweep.completed) == 6
    status = {p["run_dir"].rsplit("/", 1)[-1]: p["status"] for p in sweep.problems}
    assert status == {"l2_3": "diverged", "svb_0": "failed", "svb_1": "missing", "svb_2": "corrupt"}
    t = accuracy_table(sweep).set_index("variant")
    assert list(t.index) == ["l2", "no_reg"] and (t["n"] == 3).all()
    assert t.loc["l2", "mean"] == pytest.approx(99.1)
    assert 0 < t.loc["l2", "p_vs_no_reg"] < 0.05 and math.isnan(t.loc["no_reg", "p_vs_no_reg"])


def test_cli_on_fabricated_sweep_writes_tables_and_lists_problems(tmp_path, capsys):
    fabricated(tmp_path)
    assert main([str(tmp_path), "--planes", "0"]) == 0
    printed = capsys.readouterr()
    assert "| model | data | variant | n | mean | ci95 | std | min | max | p_vs_no_reg |" in printed.out
    assert all(f"[regnet] {status}: " in printed.err for status in ("diverged", "missing", "corrupt"))
    acc = pd.read_csv(tmp_path / "analysis" / "accuracy.csv")
    assert list(acc.columns[:9]) == ["model", "data", "variant", "n", "mean", "ci95", "std", "min", "max"]
    assert set(pd.read_csv(tmp_path / "analysis" / "problems.csv")["status"]) == {
        "diverged",
        "failed",
        "missing",
        "corrupt",
    }
    md = (tmp_path / "analysis" / "accuracy.md").read_text()
    assert md.startswith("| model |") and "svb_0`: failed" in md


def test_results_without_status_and_invalid_runs_are_problems_with_their_reason(tmp_path, capsys):
    """A results.json without status is a problem row (it was counted nowhere and listed nowhere); a sweep job
    refused for bad input leaves status ``invalid`` and its reason, which problems.csv repeats."""
    fabricated(tmp_path)
    (tmp_path / "l2_4").mkdir()
    (tmp_path / "l2_4" / "results.json").write_text(json.dumps(
        {"model": "lenet", "data": "mnist", "reg": [], "variant": "l2", "seed": 4, "test_acc": 0.5}))  # fmt: skip
    (tmp_path / "l2_5").mkdir()
    (tmp_path / "l2_5" / "results.json").write_text(json.dumps(
        {"status": "invalid", "model": "lenet", "data": "mnist", "variant": "l2", "seed": 5, "test_acc": None,
         "error": "data.batch_size=0 is invalid: it must be a positive integer"}))  # fmt: skip
    (tmp_path / "l2_6").mkdir()
    (tmp_path / "l2_6" / "results.json").write_text(
        json.dumps(
            {"status": "completed", "model": "lenet", "data": "mnist", "variant": "l2", "seed": 6, "test_acc": "0.9"}
        )
    )
    sweep = find_runs(tmp_path)
    status = {p["run_dir"].rsplit("/", 1)[-1]: (p["status"], p["reason"]) for p in sweep.problems}
    assert status["l2_4"] == ("no_status", "results.json has no status")
    assert status["l2_6"] == ("corrupt", "results.json: test_acc='0.9' is not a number")
    assert status["l2_5"] == ("invalid", "data.batch_size=0 is invalid: it must be a positive integer")
    assert accuracy_table(sweep).set_index("variant").loc["l2", "n"] == 3
    assert main([str(tmp_path), "--planes", "0"]) == 0
    problems = pd.read_csv(tmp_path / "analysis" / "problems.csv").set_index("status")
    assert problems.loc["invalid", "reason"] == "data.batch_size=0 is invalid: it must be a positive integer"
    assert "l2_4" in problems.loc["no_status", "run_dir"]
    assert "data.batch_size=0 is invalid" in capsys.readouterr().err


def test_no_runs_is_a_one_line_error_without_output(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no runs below" in err
    assert not (tmp_path / "empty" / "analysis").exists()
    with pytest.raises(NoRunsError):
        find_runs(tmp_path / "nope")


@pytest.mark.parametrize("args,match", [(["--zooms", "0"], "zoom=0.0"), (["--resolution", "1"], "resolution=1"),
                                        (["--eps", "2"], "--eps 2.0"),
                                        (["--pgd-steps", "0"], "--pgd-steps=0"),
                                        (["--pgd-step-size", "-1"], "--pgd-step-size=-1.0"),
                                        (["--example-planes", "-1"], "--example-planes=-1"),
                                        (["--device", "tpu"], "--device 'tpu' is not a device"),
                                        (["--device", "cuda:99"], "--device cuda:99 is unavailable"),
                                        (["--data-root", "/nonexistent/data"], "--data-root /nonexistent/data is not a "
                                                                              "directory"),
                                        (["--baseline", "nope"], "baseline 'nope' is not a variant of this sweep: "
                                                                 "use one of ['l2', 'no_reg']"),
                                        (["--shard", "0/2", "--no-cache"], "--shard keeps its records in the cache"),
                                        (["--shard", "0/2", "--diagnostics"], "--diagnostics are not cached"),
                                        ])  # fmt: skip
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, args, match):
    fabricated(tmp_path)
    assert main([str(tmp_path), *args]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err
    assert not (tmp_path / "analysis").exists()


@pytest.mark.parametrize("args,match", [
    (["--attacks", "--attack-list", "cw"], "argument --attack-list: invalid choice: 'cw' (choose from "),
    (["--planes", "many"], "argument --planes: invalid int value: 'many'"),
    (["--zooms"], "argument --zooms: expected at least one argument"),
    (["--square-queries", "0"], "--square-queries=0 is invalid"),
    (["--shard", "2/2"], "argument --shard: '2/2': I/N needs 0 ≤ I < N"),
    (["--shard", "half"], "argument --shard: 'half' is not I/N"),
])  # fmt: skip
def test_argument_errors_are_one_line_with_exit_2_and_write_nothing(tmp_path, capsys, args, match):
    fabricated(tmp_path)
    with pytest.raises(SystemExit) as stop:
        code = main([str(tmp_path), *args])
        raise SystemExit(code)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    if "--attack-list" in args:  # the choices, quoted or not (the quotes differ between Python versions)
        assert all(name in err for name in ("fgsm", "pgd", "noise", "autoattack", "square"))
    assert not (tmp_path / "analysis").exists()


@pytest.mark.filterwarnings("ignore:'regnet.analyze' found in sys.modules:RuntimeWarning")  # runpy, harmless
def test_run_as_python_dash_m_its_own_lines_reach_stderr(tmp_path, monkeypatch, capsys):
    """``python -m regnet.analyze`` runs the module as ``__main__``: its lines (problems, failed sanity checks,
    where the analysis went) still reach stderr under regnet's prefix, not only the analysis library's."""
    import runpy
    import sys

    fabricated(tmp_path)
    monkeypatch.setattr(sys, "argv", ["regnet.analyze", str(tmp_path), "--planes", "0"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_module("regnet.analyze", run_name="__main__", alter_sys=True)
    assert stop.value.code == 0
    err = capsys.readouterr().err
    assert f"[regnet] analysis written to {tmp_path / 'analysis'}" in err
    assert "[regnet] failed: " in err  # fabricated() has a failed run, listed once the analysis is written


def test_out_that_is_a_file_is_a_one_line_error_and_stays_untouched(tmp_path, capsys):
    fabricated(tmp_path)
    (tmp_path / "notes.txt").write_text("mine\n")
    assert main([str(tmp_path), "--planes", "0", "--out", str(tmp_path / "notes.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a file: pass a directory" in err
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    assert main([str(tmp_path), "--planes", "0", "--out", str(tmp_path / "notes.txt" / "analysis")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot write the analysis" in err


@pytest.mark.slow
def test_analyze_end_to_end_on_a_tiny_trained_sweep(tiny_sweep, capsys):
    runs = sorted(p.parent for p in tiny_sweep.rglob("results.json"))
    assert len(runs) == 4
    for run in runs:  # the confusion-matrix callback ran at test end
        cm = pd.read_csv(run / "confusion_matrix.csv", index_col=0).to_numpy()
        assert cm.shape == (10, 10) and cm.sum() == 64  # limit_test_batches=1 × eval_batch_size 64
        assert (run / "confusion_matrix.png").is_file()
    # a loaded run reproduces its recorded test accuracy
    module, dm, results = load_run(runs[0])
    x, y = pixel_test_inputs(dm, 64)
    mean, std = torch.tensor(dm.mean).view(1, -1, 1, 1), torch.tensor(dm.std).view(1, -1, 1, 1)
    with torch.no_grad():
        acc = float((module((x - mean) / std).argmax(1) == y).float().mean())
    assert acc == pytest.approx(results["test_acc"])

    out = tiny_sweep / "out"
    argv = [str(tiny_sweep), "--out", str(out), "--planes", "2", "--zooms", "0.1", "0.01", "--resolution", "16",
            "--attacks", "--eps", "0", "0.2", "--n-test", "32", "--pgd-steps", "2", "--diagnostics"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "| lenet | mnist | l2 | 2 |" in printed.out
    device = default_device()  # progress lines name the device
    assert f"[regnet] decision planes on {device}, 4/4:" in printed.err
    assert f"[regnet] robustness on {device}, 4/4:" in printed.err
    acc = pd.read_csv(out / "accuracy.csv")
    assert set(acc["variant"]) == {"none", "l2"} and "p_vs_none" in acc  # no variant set: grouped by reg
    planes = pd.read_csv(out / "tv_planes.csv")
    assert len(planes) == 4 * 2 * 2 and {"zoom", "resolution", "plane_seed", "x0_index", "half_width"} <= set(planes)
    assert planes.groupby("plane")["x0_index"].nunique().eq(1).all()  # identical planes for every model
    tv = pd.read_csv(out / "tv.csv")
    assert len(tv) == 4 * 2 and "tv_aniso_boundary_ci95" in tv
    rob = pd.read_csv(out / "robustness.csv")
    clean = rob[(rob.attack == "fgsm") & (rob.eps == 0)].set_index("variant")["mean"]
    assert clean["l2"] == pytest.approx(acc.set_index("variant").loc["l2", "mean"], abs=50)  # same scale (%)
    assert (rob[rob.attack == "jacobian_fro"]["mean"] > 0).all()
    for name in ("robustness_fgsm.png", "robustness_pgd.png", "robustness_noise.png", "accuracy.md", "tv.md"):
        assert (out / name).is_file()
    assert len(list(out.glob("planes_*.png"))) == 4
    diag = next((out / "runs").iterdir())
    assert {"confusion_matrix.csv", "learning_curves.png", "singular_values.png", "predictions.png"} <= {
        p.name for p in diag.iterdir()
    }
    assert not list(out.parent.glob(".out.*"))  # the staging directory is gone


def test_analyze_reuses_each_runs_saved_records_and_recomputes_when_anything_changes(tiny_sweep, tmp_path, capsys):
    import os

    out = tmp_path / "analysis"
    planes = [str(tiny_sweep), "--out", str(out), "--planes", "1", "--zooms", "0.1", "--resolution", "8"]
    attacks = ["--attacks", "--attack-list", "fgsm", "--eps", "0", "0.1", "--n-test", "16"]
    assert main(planes + attacks) == 0
    tv_files = sorted((out / "cache").glob("tv-*.pt"))
    assert len(tv_files) == 4 and len(list((out / "cache").glob("robustness-*.pt"))) == 4
    first = pd.read_csv(out / "tv_planes.csv")

    def mark(path):  # change one saved record: a call that prints it read the cache instead of recomputing
        saved = torch.load(path, weights_only=True)
        saved["value"][0][0]["tv_aniso_boundary"] = -1.0
        torch.save(saved, path)

    def marked():
        return int((pd.read_csv(out / "tv_planes.csv")["tv_aniso_boundary"] == -1.0).sum())

    mark(tv_files[0])
    capsys.readouterr()
    assert main(planes + attacks) == 0
    assert capsys.readouterr().err.count("[cached]") == 8  # 4 runs × (planes, attacks)
    assert marked() == 1
    second = pd.read_csv(out / "tv_planes.csv")
    pd.testing.assert_frame_equal(first.drop(columns="tv_aniso_boundary"), second.drop(columns="tv_aniso_boundary"))
    pd.testing.assert_frame_equal(
        first[second["tv_aniso_boundary"] != -1.0], second[second["tv_aniso_boundary"] != -1.0]
    )

    assert main(planes + ["--no-cache"]) == 0 and marked() == 0  # recomputed; the cache is left as it was
    assert main(planes + ["--resolution", "9"]) == 0 and marked() == 0  # other settings: another key
    tv_files[0].write_bytes(b"not a torch file")  # unreadable: recomputed and rewritten, no crash
    capsys.readouterr()
    assert main(planes) == 0 and marked() == 0
    assert capsys.readouterr().err.count("[cached]") == 3
    mark(tv_files[0])
    for ckpt in tiny_sweep.rglob("last.ckpt"):  # a retrained run has a new checkpoint: recomputed
        os.utime(ckpt, ns=(ckpt.stat().st_atime_ns, ckpt.stat().st_mtime_ns + 1_000_000_000))
    capsys.readouterr()
    assert main(planes) == 0 and marked() == 0
    assert "[cached]" not in capsys.readouterr().err


def test_shards_side_by_side_then_one_call_write_what_one_call_writes(tiny_sweep, tmp_path, capsys):
    """``--shard I/N`` puts only its share's records in the cache and writes no table; after shards 0/2 and 1/2,
    the call without ``--shard`` reads every run from the cache and writes what an unsharded call writes."""
    out = tmp_path / "analysis"
    args = [str(tiny_sweep), "--planes", "1", "--zooms", "0.1", "--resolution", "8",
            "--attacks", "--attack-list", "fgsm", "pgd", "--eps", "0", "0.1", "--n-test", "16"]  # fmt: skip
    for share, cached in (("0/2", 2), ("1/2", 4)):
        assert main([*args, "--out", str(out), "--shard", share]) == 0
        assert [p.name for p in out.iterdir()] == ["cache"]
        assert len(list((out / "cache").glob("tv-*.pt"))) == len(list((out / "cache").glob("robustness-*.pt")))
        assert len(list((out / "cache").glob("robustness-*.pt"))) == cached
    assert main([*args, "--out", str(out), "--shard", "5/6"]) == 0  # more shares than runs: an empty share
    capsys.readouterr()
    assert main([*args, "--out", str(out)]) == 0
    assert capsys.readouterr().err.count("[cached]") == 8  # 4 runs × (planes, attacks): none recomputed
    whole = tmp_path / "whole"
    assert main([*args, "--out", str(whole), "--no-cache"]) == 0
    for name in ("robustness_runs.csv", "tv_planes.csv", "accuracy.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(out / name), pd.read_csv(whole / name))


def test_a_run_whose_model_cannot_be_rebuilt_is_listed_and_skipped_never_fatal(tiny_sweep, tmp_path, capsys):
    """Issue: a run whose checkpoints/ were deleted, or whose results.json has no config, ended the whole analysis
    (exit 2, no accuracy.csv). Its accuracy needs only results.json; planes, attacks and diagnostics skip it."""
    import shutil

    sweep = tmp_path / "sweep"
    shutil.copytree(tiny_sweep, sweep, ignore=shutil.ignore_patterns("out", "analysis"))
    runs = sorted(p.parent for p in sweep.rglob("results.json"))
    shutil.rmtree(runs[0] / "checkpoints")
    shutil.rmtree(runs[1] / ".hydra")  # and no config in results.json
    results = json.loads((runs[1] / "results.json").read_text())
    results.pop("config", None)
    (runs[1] / "results.json").write_text(json.dumps(results))
    (runs[2] / "checkpoints" / "last.ckpt").write_bytes(b"truncated")  # found out only when loading
    argv = [str(sweep), "--planes", "1", "--zooms", "0.1", "--resolution", "8", "--attacks", "--attack-list", "fgsm",
            "--eps", "0", "0.1", "--n-test", "8", "--diagnostics"]  # fmt: skip
    assert main(argv) == 0
    out = sweep / "analysis"
    assert pd.read_csv(out / "accuracy.csv")["n"].sum() == 4
    problems = pd.read_csv(out / "problems.csv").set_index("run_dir")
    assert (problems["status"] == "unloadable").all() and len(problems) == 3
    assert "checkpoints/last.ckpt is missing" in problems.loc[str(runs[0]), "reason"]
    assert "neither .hydra/config.yaml nor a config" in problems.loc[str(runs[1]), "reason"]
    assert "cannot be loaded" in problems.loc[str(runs[2]), "reason"]
    assert set(pd.read_csv(out / "tv_planes.csv")["run_dir"]) == {str(runs[3])}
    assert set(pd.read_csv(out / "robustness_runs.csv")["run_dir"]) == {str(runs[3])}
    assert len(list((out / "runs").iterdir())) == 1
    printed = capsys.readouterr().err
    assert "[regnet] 3 of 4 completed runs cannot be rebuilt: counted in the accuracy table, skipped" in printed
    assert "Counted, but no planes, attacks or diagnostics" in (out / "accuracy.md").read_text()


def test_analyze_runs_autoattack_and_square_with_their_sanity_checks(tiny_sweep, tmp_path, capsys):
    out = tmp_path / "analysis"
    run = sorted(p.parent for p in tiny_sweep.rglob("results.json"))[0]  # one run keeps it quick
    argv = [
        str(run),
        "--out",
        str(out),
        "--planes",
        "0",
        "--attacks",
        "--attack-list",
        "pgd",
        "autoattack",
        "square",
        "--eps",
        "0",
        "0.3",
        "0.5",
        "--n-test",
        "8",
        "--pgd-steps",
        "2",
        "--square-queries",
        "10",
    ]
    assert main(argv) == 0
    rob = pd.read_csv(out / "robustness.csv", keep_default_na=False)
    assert {"pgd", "autoattack", "square", "jacobian_fro"} == set(rob["attack"]) and "flag" in rob
    runs = pd.read_csv(out / "robustness_runs.csv")
    aa = runs[runs.attack == "autoattack"].set_index(["run_dir", "eps"])["acc"]
    pgd = runs[runs.attack == "pgd"].set_index(["run_dir", "eps"])["acc"]
    assert (aa <= pgd + 100 / 8).all()  # the stronger attack (one image of slack: PGD's random start)
    assert (runs[runs.eps == 0.5]["acc_bound"].dropna() <= 100).all() and (runs.queries.dropna() == 10).all()
    checks = pd.read_csv(out / "robustness_checks.csv")
    assert set(checks["check"]) == {"rises_with_eps", "above_bound", "black_box_stronger"}
    assert set(checks["status"]) <= {"passed", "failed"} and len(checks) == 3  # every check made
    assert "Sanity checks" in (out / "robustness.md").read_text()
    for name in ("robustness_autoattack.png", "robustness_square.png"):
        assert (out / name).is_file()


def test_learning_curves_show_each_penalty_next_to_losses_and_accuracies():
    from regnet.analysis.diagnostics import curve_columns

    log = pd.DataFrame(columns=["epoch", "lr-SGD", "step", "test/acc", "test/acc_top5", "test/err", "test/loss",
                                "train/acc", "train/data_loss", "train/err_top5", "train/images_per_s",
                                "train/jacobian", "train/loss", "val/acc"])  # fmt: skip
    assert curve_columns(log) == ["lr-SGD", "test/acc", "test/loss", "train/acc", "train/data_loss",
                                  "train/jacobian", "train/loss", "val/acc"]  # fmt: skip


def _imports(path):
    import ast

    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_analysis_never_imports_training_and_the_confusion_callback_never_imports_analysis():
    from pathlib import Path

    import regnet

    pkg = Path(regnet.__file__).parent
    for f in [*(pkg / "analysis").glob("*.py"), pkg / "analyze.py"]:
        assert not {n for n in _imports(f) if n == "regnet.train" or n.startswith("regnet.train.")}, f
    for f in [*(pkg / "callbacks").glob("*.py"), pkg / "confusion.py", pkg / "plotting.py"]:
        assert not {n for n in _imports(f) if n.startswith("regnet.analysis")}, f


def test_one_confusion_matrix_counts_and_writes_for_the_callback_and_the_diagnostics(tmp_path):
    from regnet.analysis import confusion_matrix
    from regnet.confusion import write_confusion_matrix

    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 3.0, 0.0], [1.0, 0.0, 0.0]])
    cm = confusion_matrix(logits, torch.tensor([0, 1, 2, 2]), 3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 0], [1, 1, 0]]  # rows: true class, columns: predicted
    write_confusion_matrix(cm, tmp_path / "run")
    assert pd.read_csv(tmp_path / "run" / "confusion_matrix.csv", index_col=0).to_numpy().tolist() == cm.tolist()
    assert (tmp_path / "run" / "confusion_matrix.png").stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["confusion_matrix.csv", "confusion_matrix.png"]


def test_one_normalisation_for_uint8_and_float_pixels_used_by_the_datamodule():
    from regnet.analysis import PixelModel
    from regnet.data.base import normalize
    from regnet.data.mnist import MNIST

    pixels = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3)
    expected = torch.tensor([-2.0, -1.0, 3.0]).view(1, 1, 1, 3)  # (x/255 − 0.4) / 0.2
    assert torch.allclose(normalize(pixels, [0.4], [0.2]), expected)
    assert torch.allclose(normalize(pixels.float() / 255, (0.4,), torch.tensor([0.2])), expected)
    dm = MNIST(root="unused", mean=[0.4], std=[0.2])
    dm._mean, dm._std = torch.tensor([0.4]).view(1, -1, 1, 1), torch.tensor([0.2]).view(1, -1, 1, 1)
    assert torch.allclose(dm.normalize(pixels), expected)
    assert torch.allclose(PixelModel(torch.nn.Identity(), [0.4], [0.2])(pixels.float() / 255), expected)


def test_singular_values_are_those_of_the_weight_matrices_a_regularizer_sees():
    from regnet.analysis import singular_values
    from regnet.models.common import device_of
    from regnet.regularizers.base import weight_matrices

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                torch.nn.Linear(4, 2))  # fmt: skip
    svs = singular_values(model)
    assert list(svs) == [name for name, _, _ in weight_matrices(model)] == ["0", "3"]
    assert svs["0"].shape == (4,) and svs["3"] == pytest.approx(torch.linalg.svdvals(model[3].weight.detach()).numpy())
    assert device_of(model) == torch.device("cpu") and device_of(torch.nn.ReLU(), "meta") == torch.device("meta")
