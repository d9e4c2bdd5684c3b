"""Find runs below a directory and load a trained run back (model, data, results).

A run directory holds ``results.json`` (regnet/results.py) when training ended, ``.hydra/config.yaml``
(the composed config), ``checkpoints/last.ckpt`` and ``metrics.csv``. Problems are listed, never fatal:

- ``missing``: a directory with a Hydra config or checkpoints but no ``results.json`` (crashed, killed, running);
- ``corrupt``: an unreadable ``results.json``; ``no_status``: one without ``status``;
- any ``status`` other than ``completed`` (``diverged``, ``failed``, ``invalid``, ...), with the run's reason;
- ``no_test_acc``: completed, but ``test_acc`` is null.

None of these count in the accuracy table. A completed run whose model cannot be rebuilt (no checkpoint, no
config, an unreadable checkpoint) is ``unloadable`` once planes, attacks or diagnostics ask for its model
(``Sweep.models``): its accuracy counts (it needs only ``results.json``), and those steps skip it.

Checkpoints load weights-only (regnet/checkpoints.py): one that would need more to unpickle, code of whoever
wrote it, is ``unloadable`` with the refusal as its reason, unless the caller trusts the sweep
(``find_runs(..., trust_checkpoints=True)``, ``--trust-checkpoints``). A saved config is built by Hydra's
``instantiate``, which refuses execution-capable targets (``subprocess.run``): such a run is ``unloadable`` too.
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
from regnet.checkpoints import load_checkpoint
from regnet.errors import squeeze
from regnet.results import LAST_CHECKPOINT, RESULTS

SKIP_DIRS = {"analysis", "checkpoints", ".hydra", ".submitit"}


class NoRunsError(FileNotFoundError):
    """No results.json below the given directory."""


class UnloadableRunError(Exception):
    """A completed run whose model cannot be rebuilt from its directory; the message (one line) says why."""


UNLOADABLE = "unloadable"
OPT_IN = "--trust-checkpoints (python -m regnet.analyze) or load_run(..., trust=True)"


@dataclass
class Sweep:
    """Runs found below ``root``: completed ones as a table, the others as problems (path, status, reason)."""

    root: Path
    runs: list[dict[str, Any]] = field(default_factory=list)  # every readable results.json (+ "run_dir")
    problems: list[dict[str, str]] = field(default_factory=list)
    trust_checkpoints: bool = False  # load checkpoints with full pickle (only a sweep whose author you trust)

    @property
    def completed(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r.get("status") == "completed"]

    @property
    def unloadable(self) -> set[str]:
        """Run directories whose model cannot be rebuilt (their accuracy still counts)."""
        return {p["run_dir"] for p in self.problems if p["status"] == UNLOADABLE}

    def skip(self, run_dir: str, reason: str) -> None:
        """List a completed run as ``unloadable``: planes, attacks and diagnostics leave it out from now on."""
        if str(run_dir) not in self.unloadable:
            self.problems.append({"run_dir": str(run_dir), "status": UNLOADABLE, "reason": reason})

    def table(self) -> pd.DataFrame:
        """One row per completed run: model, data, variant, seed, test_acc, run_dir."""
        rows = [{"model": r.get("model") or "?", "data": r.get("data") or "?", "variant": group_variant(r),
                 "seed": r.get("seed"), "test_acc": r.get("test_acc"), "run_dir": r["run_dir"]}
                for r in self.completed]  # fmt: skip
        return pd.DataFrame(rows, columns=["model", "data", "variant", "seed", "test_acc", "run_dir"])

    def models(self) -> pd.DataFrame:
        """The rows of :meth:`table` with a test accuracy whose model can be rebuilt: what planes, attacks and
        diagnostics analyse. The first call lists the runs without a config or checkpoint as ``unloadable``
        (only then: an accuracy table needs neither)."""
        runs = self.table().dropna(subset=["test_acc"])
        results = {r["run_dir"]: r for r in self.completed}
        for run_dir in runs["run_dir"]:
            if run_dir not in self.unloadable and (why := rebuild_problem(Path(run_dir), results[run_dir])):
                self.skip(run_dir, why)
        return runs[~runs["run_dir"].isin(self.unloadable)]

    def problems_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.problems, columns=["run_dir", "status", "reason"])

    def shard(self, index: int, count: int) -> Sweep:
        """This sweep with only the ``index``-th of every ``count`` completed runs (0-based, in the order the
        analysis visits them: model, data, variant, seed), so that ``count`` analyses sharing one cache split
        it between them. Taking every ``count``-th run spreads each variant's seeds over the shares. The same
        ``root``, so the cache keys are those of the whole sweep."""
        order = self.table().sort_values(["model", "data", "variant", "seed"])["run_dir"].tolist()
        mine = set(order[index::count])
        runs = [r for r in self.runs if r.get("status") != "completed" or r["run_dir"] in mine]
        return Sweep(self.root, runs, list(self.problems), self.trust_checkpoints)


def group_variant(results: dict[str, Any]) -> str:
    """The variant a run belongs to: its ``variant``, else its regularizer names joined by '+', else none."""
    if results.get("variant"):
        return str(results["variant"])
    reg = results.get("reg") or []
    return "+".join(reg) if reg else "none"


def _is_run_dir(path: Path) -> bool:
    return (path / ".hydra" / "config.yaml").is_file() or (path / "checkpoints").is_dir()


def find_runs(root: str | Path, trust_checkpoints: bool = False) -> Sweep:
    """Every ``results.json`` below ``root`` (a run, a multirun sweep or a tree of them), plus missing runs.
    ``trust_checkpoints``: the runs' models load their checkpoints with full pickle (module docstring).

    Raises NoRunsError (one line) when there is neither a result nor a run directory below ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise NoRunsError(f"{root} is not a directory: pass a run or sweep directory (e.g. outputs/hoffman2019_mnist)")
    sweep = Sweep(root, trust_checkpoints=trust_checkpoints)
    candidates = sorted(
        {p.parent for p in root.rglob(RESULTS)} | {p.parent.parent for p in root.rglob(".hydra/config.yaml")}
    )
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
        status = results.get("status")
        sweep.runs.append(results)
        if status is None:
            sweep.problems.append(
                {"run_dir": str(run_dir), "status": "no_status", "reason": f"{RESULTS} has no status"}
            )
        elif status != "completed":
            reason = results.get("error") or results.get("reason") or ""
            sweep.problems.append({"run_dir": str(run_dir), "status": str(status), "reason": squeeze(reason)})
        elif results.get("test_acc") is None:
            sweep.problems.append({"run_dir": str(run_dir), "status": "no_test_acc", "reason": "test_acc is null"})
        elif isinstance(results["test_acc"], bool) or not isinstance(results["test_acc"], (int, float)):
            sweep.runs.remove(results)
            sweep.problems.append(
                {
                    "run_dir": str(run_dir),
                    "status": "corrupt",
                    "reason": f"{RESULTS}: test_acc={results['test_acc']!r} is not a number",
                }
            )
    if not sweep.runs and not sweep.problems:
        raise NoRunsError(f"no runs below {root}: expected <run dir>/{RESULTS} files written by python -m regnet.train")
    return sweep


def rebuild_problem(run_dir: Path, results: dict[str, Any]) -> str | None:
    """Why the run's model cannot be rebuilt (no config, no checkpoint), or None; cheap, reads no checkpoint."""
    if not (run_dir / ".hydra" / "config.yaml").is_file() and not results.get("config"):
        return f"neither .hydra/config.yaml nor a config in {RESULTS}: the model cannot be rebuilt"
    if not (run_dir / LAST_CHECKPOINT).is_file():
        return f"{LAST_CHECKPOINT} is missing: no trained weights to analyse"
    return None


def run_config(run_dir: str | Path, results: dict[str, Any] | None = None) -> DictConfig:
    """The run's composed config: ``.hydra/config.yaml`` if present, else ``results.json``'s ``config``."""
    run_dir = Path(run_dir)
    hydra_cfg = run_dir / ".hydra" / "config.yaml"
    if hydra_cfg.is_file():
        try:
            return OmegaConf.load(hydra_cfg)
        except Exception as e:  # noqa: BLE001 — unreadable or not YAML
            raise UnloadableRunError(f"{hydra_cfg} cannot be read: {squeeze(e)}") from e
    results = results if results is not None else json.loads((run_dir / RESULTS).read_text())
    if not results.get("config"):
        raise UnloadableRunError(
            f"{run_dir} has neither .hydra/config.yaml nor a config in {RESULTS}: cannot rebuild it"
        )
    cfg = dict(results["config"])
    cfg.pop("hydra", None)
    return OmegaConf.create(cfg)


def load_run(
    run_dir: str | Path,
    device: str | torch.device | None = None,
    data_root: str | None = None,
    trust: bool = False,
    ckpt_path: str | Path | None = None,
    opt_in: str = OPT_IN,
):
    """(RegNetModule in eval mode on ``device`` (default: a GPU if there is one), datamodule set up for testing on
    the CPU, results dict).

    Rebuilds the run with ``regnet.build.build`` from its config and loads ``checkpoints/last.ckpt`` (or
    ``ckpt_path``, another checkpoint of the same model; ``opt_in`` names the caller's trust switch in a refusal).
    ``data_root`` overrides ``data.root`` (e.g. when the run was trained on another machine). The checkpoint
    loads weights-only unless ``trust``; one that needs more is refused (UnloadableRunError naming the file).
    Raises UnloadableRunError (one line) when the config, the model or the checkpoint cannot be read; the
    dataset's own errors (files missing or corrupt) pass through, as they concern every run of that dataset."""
    from regnet.build import build  # heavy import; only when loading

    run_dir = Path(run_dir)
    results_path = run_dir / RESULTS
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    cfg = run_config(run_dir, results)  # UnloadableRunError without a config
    ckpt = Path(ckpt_path) if ckpt_path is not None else run_dir / LAST_CHECKPOINT  # another of the run's checkpoints
    if not ckpt.is_file():
        raise UnloadableRunError(
            f"{ckpt} is missing: the run has no checkpoint to analyse (train it, or drop it from the sweep)"
        )
    try:
        with open_dict(cfg):
            if data_root is not None:
                cfg.data.root = str(data_root)
            cfg.data.on_device = False
            cfg.compile = False  # eager: a compiled forward would recompile for each batch shape of planes/attacks
        module, datamodule, _ = build(cfg)
    except Exception as e:  # noqa: BLE001 — any error of the run's own config: this run is skipped, not the analysis
        raise UnloadableRunError(f"the model cannot be rebuilt from the run's config: {squeeze(e)}") from e
    try:
        state = load_checkpoint(ckpt, trust=trust, opt_in=opt_in)["state_dict"]
        missing = [k for k in module.load_state_dict(state, strict=False).missing_keys if k.startswith("model.")]
    except Exception as e:  # noqa: BLE001 — truncated, foreign or mismatched checkpoint
        raise UnloadableRunError(f"{ckpt} cannot be loaded: {squeeze(e)}") from e
    if missing:
        raise UnloadableRunError(f"{ckpt} lacks {len(missing)} of the model's weights ({missing[0]}, ...): "
                                 "a checkpoint of another model?")  # fmt: skip
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
