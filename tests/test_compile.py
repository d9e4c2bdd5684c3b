"""``compile=true``: the model's forward through torch.compile (regnet/build.py), refused with double backward."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from regnet.build import build
from tests.conftest import QUIET, compose_cfg, run_cli, tiny, train_cli


def test_compile_true_compiles_the_forward_in_place(data_root):
    """``compile=true`` wraps the model's forward (``nn.Module.compile``, lazy: nothing compiles until a first call),
    so its ``state_dict`` keys are the eager model's (no ``_orig_mod.`` prefix): checkpoints load either way."""
    eager, _, _ = build(compose_cfg([f"data.root={data_root}", *tiny()]))
    compiled, _, _ = build(compose_cfg([f"data.root={data_root}", "compile=true", *tiny()]))
    assert eager.model._compiled_call_impl is None and compiled.model._compiled_call_impl is not None
    assert list(compiled.state_dict()) == list(eager.state_dict())


# Compiling happens in a subprocess (the command line's): inductor's worker pool and caches would stay in this one,
# and the tests that fork a run to kill it (test_resume) need a process without them.
@pytest.mark.slow  # compiling takes tens of seconds on a busy CPU
def test_a_compiled_run_trains_records_and_keeps_the_models_math(data_root, tmp_path):
    """A compiled run trains and records; its checkpoint's weights in the eager model give the test loss the compiled
    model recorded (one batch, the run's own test path)."""
    proc = train_cli(["compile=true", *tiny(), *QUIET, f"hydra.run.dir={tmp_path}"], data_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "completed" and results["global_step"] == 3
    assert results["config"]["compile"] is True
    checkpoint = tmp_path / "checkpoints" / "last.ckpt"
    assert results["test_loss"] > 0 and checkpoint.is_file()

    eager, datamodule, _ = build(compose_cfg([f"data.root={data_root}", *tiny()]))
    eager.load_state_dict(torch.load(checkpoint, weights_only=True)["state_dict"])
    trainer = L.Trainer(accelerator="cpu", limit_test_batches=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)  # fmt: skip
    (tested,) = trainer.test(eager, datamodule=datamodule, verbose=False)
    assert tested["test/loss"] == pytest.approx(results["test_loss"], rel=1e-4, abs=1e-5)


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
