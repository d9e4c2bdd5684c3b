"""The benchmark scripts run: ``benchmarks/end_to_end.py --quick`` times a real six-run sweep against six hand-loop
processes on a small synthetic set in the real idx format (a smoke test; the numbers are in benchmarks/RESULTS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_end_to_end_quick_times_both_sides(tmp_path):
    out = tmp_path / "e2e.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "end_to_end.py"), "--quick", "--threads", "1", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert len(result["regnet_s"]) == len(result["hand_s"]) == 1
    assert result["regnet_s"][0] > 0 and result["hand_s"][0] > 0
    assert result["ratio"] == pytest.approx(result["regnet_s"][0] / result["hand_s"][0])
    assert "regnet / hand" in proc.stdout


def test_end_to_end_hand_loop_trains(tmp_path):
    """One hand-loop process learns: a few steps on separable synthetic data beat chance on its test set."""
    from regnet.data.synthetic import write_idx_dataset

    sys.path.insert(0, str(REPO / "benchmarks"))
    import end_to_end

    write_idx_dataset(tmp_path, "FashionMNIST", n_train=2_000, n_test=1_000)
    assert end_to_end.hand_run("jacobi", tmp_path, epochs=1, steps=20, test_batches=1) > 0.3
