"""Find runs below a directory and load a trained run back (model, data, results).

A run directory holds ``results.json`` (regnet/results.py) when training ended, ``.hydra/config.yaml``
(the composed config), ``checkpoints/last.ckpt`` and ``metrics.csv``. A directory with a Hydra config but no
``results.json`` is a *missing* run (crashed, killed or still running); ``status`` other than ``completed``
(``diverged``, ``failed``) is listed as such; an unreadable ``results.json`` is reported as ``corrupt``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from regnet.analysis.device import default_device
from regnet.results import LAST_CHECKPOINT, RESULTS

SKIP_DIRS = {"analysis", "checkpoints", ".hydra", ".submitit"}


class NoRunsError(FileNotFoundError):
    """No results.json below the given directory."""


@dataclass
class Sweep:
    """Runs found below ``root``: completed ones as a table, the others as problems (path, status, reason)."""

    root: Path
    runs: list[dict[str, Any]] = field(default_factory=list)  # every readable results.json (+ "run_dir")
    problems: list[dict[str, str]] = field(default_factory=list)

    @property
    def completed(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r.get("status") == "completed"]

    def table(self) -> pd.DataFrame:
        """One row per completed run: model, data, variant, seed, test_acc, run_dir."""
        rows = [{"model": r.get("model") or "?", "data": r.get("data") or "?", "variant": group_variant(r),
                 "seed": r.get("seed"), "test_acc": r.get("test_acc"), "run_dir": r["run_dir"]}
                for r in self.completed]  # fmt: skip
        return pd.DataFrame(rows, columns=["model", "data", "variant", "seed", "test_acc", "run_dir"])

    def problems_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.problems, columns=["run_dir", "status", "reason"])


def group_variant(results: dict[str, Any]) -> str:
    """The variant a run belongs to: its ``variant``, else its regularizer names joined by '+', else none."""
    if results.get("variant"):
        return str(results["variant"])
    reg = results.get("reg") or []
    return "+".join(reg) if reg else "none"


def _is_run_dir(path: Path) -> bool:
    return (path / ".hydra" / "config.yaml").is_file() or (path / "checkpoints").is_dir()


def find_runs(root: str | Path) -> Sweep:
    """Every ``results.json`` below ``root`` (a run, a multirun sweep or a tree of them), plus missing runs.

    Raises NoRunsError (one line) when there is neither a result nor a run directory below ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise NoRunsError(f"{root} is not a directory: pass a run or sweep directory (e.g. outputs/hoffman2019_mnist)")
    sweep = Sweep(root)
    candidates = sorted({p.parent for p in root.rglob(RESULTS)} | {p.parent.parent for p in root.rglob(".hydra/config.yaml")})
    for run_dir in candidates:
        if SKIP_DIRS & set(run_dir.relative_to(root).parts):
            continue
        path = run_dir / RESULTS
        if not path.is_file():
            if _is_run_dir(run_dir):
                sweep.problems.append({"run_dir": str(run_dir), "status": "missing", "reason": "no results.json"})
            continue
        try:
            results = json.loads(path.read_text())
            if not isinstance(results, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:
            sweep.problems.append({"run_dir": str(run_dir), "status": "corrupt", "reason": f"{RESULTS}: {e}"})
            continue
        results["run_dir"] = str(run_dir)
        status = results.get("status", "completed")
        sweep.runs.append(results)
        if status != "completed":
            sweep.problems.append({"run_dir": str(run_dir), "status": str(status), "reason": str(results.get("error", ""))})
        elif results.get("test_acc") is None:
            sweep.problems.append({"run_dir": str(run_dir), "status": "no_test_acc", "reason": "test_acc is null"})
    if not sweep.runs and not sweep.problems:
        raise NoRunsError(f"no runs below {root}: expected <run dir>/{RESULTS} files written by python -m regnet.train")
    return sweep


def run_config(run_dir: str | Path, results: dict[str, Any] | None = None) -> DictConfig:
    """The run's composed config: ``.hydra/config.yaml`` if present, else ``results.json``'s ``config``."""
    run_dir = Path(run_dir)
    hydra_cfg = run_dir / ".hydra" / "config.yaml"
    if hydra_cfg.is_file():
        return OmegaConf.load(hydra_cfg)
    results = results if results is not None else json.loads((run_dir / RESULTS).read_text())
    if not results.get("config"):
        raise FileNotFoundError(f"{run_dir} has neither .hydra/config.yaml nor a config in {RESULTS}: cannot rebuild it")
    cfg = dict(results["config"])
    cfg.pop("hydra", None)
    return OmegaConf.create(cfg)


def load_run(run_dir: str | Path, device: str | torch.device | None = None, data_root: str | None = None):
    """(RegNetModule in eval mode on ``device`` (default: a GPU if there is one), datamodule set up for testing on the CPU, results dict).

    Rebuilds the run with ``regnet.build.build`` from its config and loads ``checkpoints/last.ckpt``.
    ``data_root`` overrides ``data.root`` (e.g. when the run was trained on another machine)."""
    from regnet.build import build  # heavy import; only when loading

    run_dir = Path(run_dir)
    results_path = run_dir / RESULTS
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    cfg = run_config(run_dir, results)
    with open_dict(cfg):
        if data_root is not None:
            cfg.data.root = str(data_root)
        cfg.data.on_device = False
    module, datamodule, _ = build(cfg)
    ckpt = run_dir / LAST_CHECKPOINT
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt} is missing: the run has no checkpoint to analyse (train it, or drop it from the sweep)")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    module.load_state_dict(state, strict=False)
    module.to(device or default_device()).eval()
    datamodule.prepare_data()  # as training does: copy from a local source (or download) if the files are not there
    datamodule.setup("test")
    return module, datamodule, results


def test_inputs(datamodule, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test images in pixel space [0, 1], float (N, C, H, W), and labels (N,)."""
    x, y = datamodule.splits["test"]
    if n is not None:
        x, y = x[:n], y[:n]
    return x.float().cpu() / 255.0, y.cpu()
