"""Evaluate a trained run's checkpoint: ``python -m regnet.eval <run dir> [key=value ...]`` (``conf/eval.yaml``).

    python -m regnet.eval outputs/train/default                                 # test metrics
    python -m regnet.eval outputs/train/default attacks=[fgsm,pgd] eps=[0,0.05,0.1] n_test=1000
    python -m regnet.eval ckpt_path=outputs/train/default/checkpoints/last.ckpt

The model is rebuilt from the run's own config and the checkpoint loaded weights-only
(:func:`regnet.analysis.runs.load_run`; ``trust_checkpoint=true`` unpickles it in full, for a file whose author
you trust). The test metrics (loss, accuracy, top-k on the whole test set) come from Lightning's ``Trainer.test``
with the module's own ``test_step``; ``attacks=[...]`` adds the analysis's attacks (:mod:`regnet.analysis.attacks`
through :func:`regnet.analysis.records.attack_rows`) on the first ``n_test`` test images, with the mean ‖J‖_F
and the gradient-masking flags (:mod:`regnet.analysis.checks`).

The result is one new JSON file, by default ``<run dir>/eval-<UTC time>.json``; the run's own files are only read,
and an existing file is never overwritten. Bad input (no such directory, no checkpoint, an untrusted checkpoint,
an unknown attack) is one line on stderr and exit code 2 before anything is computed; an evaluation that fails
once started is one line and exit code 1, with nothing written.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from regnet.errors import CONF, one_line, squeeze
from regnet.results import LAST_CHECKPOINT, RESULTS

OPT_IN = "trust_checkpoint=true"
PATH_KEYS = ("run_dir", "ckpt_path", "out", "data_root")  # values that may hold '=' and ',' (run directory names)


class EvaluationFailed(RuntimeError):
    """The evaluation started and failed (exit code 1)."""


# --- the command line ----------------------------------------------------------------------------------------
def overrides_from(argv: list[str]) -> list[str]:
    """Hydra overrides from the command line: a first bare argument is ``run_dir=``, and path values are quoted,
    since run directory names hold ``=`` and ``,`` (``outputs/train/reg=l2,seed=1``), which Hydra reads as syntax."""
    out, positional = [], []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or not re.fullmatch(r"\+{0,2}~?[A-Za-z_][\w.]*", key):  # a path, '=' in its name or not
            positional.append(arg)
            key, value = "run_dir", arg
        if key in PATH_KEYS and value and value != "null" and value[0] not in "'\"":
            quote = "'" if '"' in value else '"'
            arg = f"{key}={quote}{value}{quote}"
        out.append(arg)
    if len(positional) > 1:
        raise ValueError(f"one run directory at a time (got {', '.join(positional)}): evaluate each in its own call")
    return out


def compose_eval(argv: list[str]) -> DictConfig:
    """``conf/eval.yaml`` with the command line's overrides (Hydra's compose API: no output folder, no log file)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = overrides_from(argv)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("eval", overrides=overrides)


def check_settings(cfg: DictConfig) -> None:
    """The attack settings, before any file is read: one line naming the bad value and what is accepted."""
    from regnet.analysis.attacks import ATTACKS
    from regnet.analyze import check_device

    for attack in cfg.attacks:
        if attack not in ATTACKS:
            raise ValueError(f"attacks: {attack!r} is unknown: use any of {list(ATTACKS)}, e.g. attacks=[fgsm,pgd]")
    for eps in cfg.eps:
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps < 0:
            raise ValueError(f"eps: {eps!r} is invalid: ε is an L∞ radius in pixel units, a number ≥ 0 (eps=[0,0.05])")
    if cfg.device is not None:
        try:
            check_device(str(cfg.device))
        except ValueError as err:  # analyze's flag is --device; here the key is device=
            raise ValueError(str(err).replace("--device ", "device=")) from None
    n = cfg.n_test
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n_test={n!r} is invalid: a positive number of test images, or null for all of them")


def locate(cfg: DictConfig) -> tuple[Path, Path]:
    """(run directory, checkpoint) from ``run_dir`` and/or ``ckpt_path``; ValueError (one line) if either is
    missing or is not what it should be."""
    if cfg.run_dir is None and cfg.ckpt_path is None:
        raise ValueError("nothing to evaluate: give a run directory (python -m regnet.eval outputs/train/default) "
                         "or ckpt_path=<checkpoint>")  # fmt: skip
    ckpt = Path(cfg.ckpt_path) if cfg.ckpt_path is not None else None
    if ckpt is not None and not ckpt.is_file():
        raise ValueError(f"ckpt_path={ckpt} is not a file: pass a checkpoint, e.g. <run dir>/{LAST_CHECKPOINT}")
    if cfg.run_dir is not None:
        run_dir = Path(cfg.run_dir)
        if not run_dir.is_dir():
            raise ValueError(f"{run_dir} is not a directory: pass a run directory, e.g. outputs/train/default")
    else:
        run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    if not (run_dir / ".hydra" / "config.yaml").is_file() and not (run_dir / RESULTS).is_file():
        raise ValueError(f"{run_dir} is not a run directory (neither .hydra/config.yaml nor {RESULTS}): the "
                         "model is rebuilt from its run's config; with ckpt_path=, give run_dir= its run")  # fmt: skip
    ckpt = ckpt if ckpt is not None else run_dir / LAST_CHECKPOINT
    if not ckpt.is_file():
        raise ValueError(f"{run_dir} has no checkpoint ({LAST_CHECKPOINT} is missing): train it, or pass ckpt_path=")
    return run_dir, ckpt


def output_path(cfg: DictConfig, run_dir: Path, now: datetime) -> Path:
    """Where the result goes: ``out``, or a new ``<run dir>/eval-<UTC time>.json``; never an existing file."""
    if cfg.out is not None:
        out = Path(cfg.out)
        if out.exists():
            raise ValueError(f"out={out} exists: choose another file (an evaluation never overwrites a file)")
        return out
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    out, n = run_dir / f"eval-{stamp}.json", 1
    while out.exists():  # two evaluations in one second
        n += 1
        out = run_dir / f"eval-{stamp}-{n}.json"
    return out


# --- the evaluation ------------------------------------------------------------------------------------------
def load(cfg: DictConfig, run_dir: Path, ckpt: Path, device: str):
    """(module, datamodule, results.json) of the run, the checkpoint loaded weights-only unless trusted."""
    from regnet.analysis.runs import UnloadableRunError, load_run
    from regnet.checkpoints import UntrustedCheckpoint

    try:
        return load_run(run_dir, device, cfg.data_root, trust=cfg.trust_checkpoint, ckpt_path=ckpt, opt_in=OPT_IN)
    except UnloadableRunError as err:
        if isinstance(err.__cause__, UntrustedCheckpoint):
            raise err.__cause__ from None  # its own line: the file, what it needs, trust_checkpoint=true
        raise ValueError(str(err)) from err


def test_metrics(module, datamodule, device: str, trust: bool) -> dict[str, float]:
    """The module's test metrics (``test/loss``, ``test/acc``, ``test/acc_top5``, ...) on the whole test set, with
    a Lightning Trainer that logs and saves nothing (its root is a temporary folder)."""
    import lightning as L
    import torch

    where = torch.device(device)
    accelerator, devices = ("gpu", [where.index or 0]) if where.type == "cuda" else ("cpu", 1)
    with tempfile.TemporaryDirectory() as scratch:
        quiet = {"enable_progress_bar": False, "enable_model_summary": False, "enable_checkpointing": False}
        trainer = L.Trainer(accelerator=accelerator, devices=devices, logger=False, default_root_dir=scratch, **quiet)
        (metrics,) = trainer.test(module, datamodule=datamodule, verbose=False, weights_only=not trust)
    return {k: float(v) for k, v in metrics.items()}


def attack_metrics(cfg: DictConfig, module, datamodule, results: dict, device: str, run_dir: Path) -> list[dict]:
    """Accuracy (%) under each requested attack and ε, the mean ‖J‖_F, and each row's sanity-check ``flag``."""
    import pandas as pd

    from regnet.analysis.checks import RUN, sanity_flags
    from regnet.analysis.records import attack_rows

    settings = {k: cfg[k] for k in ("seed", "pgd_steps", "pgd_step_size", "pgd_random_start", "square_queries")}
    rows = attack_rows(module, datamodule, results, device, list(cfg.attacks), list(cfg.eps), cfg.n_test, **settings)
    df = pd.DataFrame(rows).assign(**{k: results.get(k, str(run_dir) if k == "run_dir" else None) for k in RUN})
    flags = sanity_flags(df)
    return [r | {"flag": f} for r, f in zip(rows, flags)]


def evaluate(cfg: DictConfig) -> tuple[dict[str, Any], Path]:
    """Evaluate the run ``cfg`` names and write the result (module docstring); returns (result, its path)."""
    import torch

    import regnet
    from regnet.analysis.device import default_device
    from regnet.files import write_atomic
    from regnet.results import git_commit

    check_settings(cfg)
    run_dir, ckpt = locate(cfg)
    now = datetime.now(UTC)
    out = output_path(cfg, run_dir, now)
    device = str(cfg.device or default_device())
    module, datamodule, results = load(cfg, run_dir, ckpt, device)  # bad input ends here, before any computing
    try:
        test = test_metrics(module, datamodule, device, cfg.trust_checkpoint) if cfg.test else None
        attacks = attack_metrics(cfg, module, datamodule, results, device, run_dir) if cfg.attacks else []
    except Exception as err:  # noqa: BLE001 — reported in one line, exit code 1, nothing written
        raise EvaluationFailed(f"evaluating {ckpt} failed: {one_line(err)}") from err
    record = {
        "run_dir": str(run_dir),
        "checkpoint": str(ckpt),
        "evaluated_at": now.isoformat(timespec="seconds"),
        "run": {k: results.get(k) for k in ("model", "data", "variant", "seed", "tags", "status", "test_acc")},
        "test": test,
        "attacks": attacks,
        "device": device,
        "regnet_version": regnet.__version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "settings": OmegaConf.to_container(cfg, resolve=True),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, json.dumps(record, indent=2, default=str) + "\n")
    return record, out


def summary(record: dict[str, Any], out: Path) -> str:
    """What the command prints: the test accuracy, one line per attack and ε, and where the result went."""
    lines = []
    if record["test"] is not None:
        test = record["test"]
        lines.append(f"test: acc {100 * test['test/acc']:.2f} %, loss {test['test/loss']:.4f}")
    for r in record["attacks"]:
        if r["attack"] == "jacobian_fro":
            lines.append(f"mean ‖J‖_F {r['jacobian_fro']:.4g} on {r['n_test']} images")
        else:
            flag = f"  [{r['flag']}]" if r["flag"] else ""
            lines.append(f"{r['attack']} ε={r['eps']:g}: acc {r['acc']:.2f} % of {r['n_test']}{flag}")
    return "\n".join([*lines, f"written to {out}"])


def main(argv: list[str] | None = None) -> int:
    """``python -m regnet.eval``: 0 when the result is written, 2 on bad input, 1 when the evaluation failed."""
    argv = sys.argv[1:] if argv is None else argv
    if {"-h", "--help"} & set(argv):
        print(__doc__.strip() + "\n\nSettings (conf/eval.yaml):\n\n" + (CONF / "eval.yaml").read_text())
        return 0
    try:
        record, out = evaluate(compose_eval(argv))
    except EvaluationFailed as err:
        print(f"regnet: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 — bad input: one line, exit code 2
        line = squeeze(err) if isinstance(err, ValueError) else one_line(err)  # UntrustedCheckpoint is a ValueError
        print(f"regnet: {line.replace('python -m regnet.train --cfg job', 'python -m regnet.eval --help')}",
              file=sys.stderr)  # fmt: skip
        return 2
    print(summary(record, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
