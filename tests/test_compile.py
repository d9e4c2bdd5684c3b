"""``compile=true``: the model's forward through torch.compile (regnet/build.py), refused with double backward."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import QUIET, REPO, run_cli, tiny, train_cli

# Compiling happens in a subprocess: inductor's worker pool and caches would stay in this one, and the tests that
# fork a run to kill it (test_resume) need a process without them.
COMPARE = """
import sys, torch
from tests.conftest import compose_cfg, tiny
from regnet.build import build
root = sys.argv[1]
eager, _, _ = build(compose_cfg([f"data.root={root}", *tiny()]))
compiled, _, _ = build(compose_cfg([f"data.root={root}", "compile=true", *tiny()]))
assert eager.model._compiled_call_impl is None and compiled.model._compiled_call_impl is not None
compiled.model.load_state_dict(eager.model.state_dict())  # the same keys: no _orig_mod. prefix
x = torch.randn(8, 1, 28, 28)
with torch.no_grad():
    torch.testing.assert_close(compiled.model.eval()(x), eager.model.eval()(x), rtol=1e-4, atol=1e-5)
print("same outputs")
"""


@pytest.mark.slow  # compiling takes tens of seconds on a busy CPU
def test_compile_true_compiles_the_forward_and_keeps_its_math(data_root):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", COMPARE, str(data_root)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600, check=False)  # fmt: skip
    assert proc.returncode == 0 and "same outputs" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.slow
def test_a_compiled_run_trains_and_records(data_root, tmp_path):
    proc = train_cli(["compile=true", *tiny(), *QUIET, f"hydra.run.dir={tmp_path}"], data_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "completed" and results["global_step"] == 3
    assert results["config"]["compile"] is True
    assert results["test_loss"] > 0 and (tmp_path / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["compile=true", "reg=jacobian"], "compile=true cannot train reg=jacobian: torch.compile has no double"),
        (["compile=yes"], "compile='yes' is invalid: use true, false or a mode: default, reduce-overhead"),
    ],
)
def test_refused_in_one_line_before_anything_is_written(overrides, message, data_root, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    args = [*overrides, f"data.root={data_root}", *tiny(), *QUIET, f"hydra.run.dir={run_dir}"]
    code, err = run_cli(args, monkeypatch, capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], err
    assert not (run_dir / "results.json").exists() and not (run_dir / "checkpoints").exists()
