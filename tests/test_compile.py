"""``compile=true``: the model's forward through torch.compile (regnet/build.py), refused with double backward."""

from __future__ import annotations

import pytest
import torch

from regnet.build import build
from regnet.train import train
from tests.conftest import QUIET, compose_cfg, run_cli, tiny


@pytest.mark.slow  # compiling takes tens of seconds on a busy CPU
def test_compile_true_compiles_the_forward_and_keeps_its_math(data_root):
    eager, _, _ = build(compose_cfg([f"data.root={data_root}", *tiny()]))
    compiled, _, _ = build(compose_cfg([f"data.root={data_root}", "compile=true", *tiny()]))
    assert eager.model._compiled_call_impl is None
    assert compiled.model._compiled_call_impl is not None
    compiled.model.load_state_dict(eager.model.state_dict())  # the same keys: no _orig_mod. prefix
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(compiled.model.eval()(x), eager.model.eval()(x), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_a_compiled_run_trains_and_records(data_root, tmp_path):
    cfg = compose_cfg([f"data.root={data_root}", "compile=true", *tiny()], return_hydra_config=True)
    results = train(cfg, tmp_path)
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
