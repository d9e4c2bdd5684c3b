"""The end-to-end benchmark's hand side learns. Its whole ``--quick`` mode (a real six-run sweep against six
hand-loop processes, about 35 s on 2 cores) runs in .ci/run after the suite, outside the suite's time budget; the
numbers are in benchmarks/RESULTS.md."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_end_to_end_hand_loop_trains(tmp_path):
    """One hand-loop process learns: a few steps on separable synthetic data beat chance on its test set."""
    from regnet.data.synthetic import write_idx_dataset

    sys.path.insert(0, str(REPO / "benchmarks"))
    import end_to_end

    write_idx_dataset(tmp_path, "FashionMNIST", n_train=2_000, n_test=1_000)
    assert end_to_end.hand_run("jacobi", tmp_path, epochs=1, steps=20, test_batches=1) > 0.3


def test_callback_hooks_benchmark_runs(monkeypatch, capsys):
    """benchmarks/callback_hooks.py (its numbers are in RESULTS.md) runs on regnet's Trainer and skips idle hooks."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import callback_hooks

    monkeypatch.setattr(sys, "argv", ["callback_hooks.py", "--steps", "20", "--reps", "1"])
    callback_hooks.main()
    out = capsys.readouterr().out
    assert "idle per-step hooks skipped" in out and "rep 0:" in out
    assert int(out.split("; ")[1].split()[0]) > 0  # some hooks were skipped


@pytest.mark.slow
def test_manual_optimisation_benchmark_runs(monkeypatch, capsys):
    """benchmarks/manual_optimisation.py (its numbers are in RESULTS.md) times its four sides; each Lightning side
    trains the steps it was asked for, and the raw one is the one whose steps Lightning does not count."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import manual_optimisation

    monkeypatch.setattr(sys, "argv", ["manual_optimisation.py", "--reps", "1", "--steps", "12", "--warmup", "4"])
    manual_optimisation.main()
    out = capsys.readouterr().out
    assert all(f"{side}/hand" in out for side in ("automatic", "manual", "raw")), out
