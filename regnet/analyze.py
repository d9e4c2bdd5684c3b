"""Analyse a sweep: ``python -m regnet.analyze <dir> [--out DIR] [--baseline no_reg] ...``

Finds every ``results.json`` below ``<dir>``, groups runs by (model, data, variant) and writes into
``<dir>/analysis/`` (or ``--out``):
- ``accuracy.csv`` / ``accuracy.md``: n, mean, ci95 (Student t, n − 1 dof, sample std), std, min, max of test
  accuracy in %, and Welch p-values against ``--baseline``; ``problems.csv``: failed, diverged, invalid,
  missing or corrupt runs, and completed runs whose model cannot be rebuilt (no checkpoint, no config: counted
  in the accuracy table, skipped by everything else); listed, never fatal.
- ``tv_planes.csv`` (one row per model, zoom and plane, with every parameter), ``tv.csv`` / ``tv.md``
  (mean ± 95 % CI over planes per model and zoom), ``planes_<run>.png`` (example planes) — unless
  ``--planes 0``.
- ``robustness_runs.csv``, ``robustness.csv``, ``robustness_<attack>.png`` (accuracy vs ε per variant, 95 % CI
  over seeds) and the mean ‖J‖_F — with ``--attacks``; attacks: fgsm, pgd, noise, autoattack (the
  standard AutoAttack), square (black-box). ``robustness_checks.csv`` (also under the table in
  ``robustness.md``): the sanity checks against gradient masking, and the ``flag`` column where one fails.
- ``runs/<run>/`` confusion matrix, top-k error, galleries, learning curves, singular values — with
  ``--diagnostics``.
Every file is written atomically; with no runs below ``<dir>`` it exits with a one-line error and writes nothing.
Each run's plane and attack records are also kept in ``<out>/cache/`` as soon as they are computed and reused by
the next call with the same settings, so an interrupted analysis resumes and added seeds cost only themselves
(``--no-cache`` recomputes everything; :mod:`regnet.analysis.cache`). ``--shard I/N`` computes only every N-th
run's records into that cache and writes no tables: N such calls side by side, then one without ``--shard``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from regnet.analysis.attacks import ATTACKS, SQUARE_QUERIES
from regnet.analysis.report import write_analysis
from regnet.errors import squeeze
from regnet.log import to_stderr


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line on stderr (no usage block), exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def shard_arg(text: str) -> tuple[int, int]:
    """``--shard I/N`` as (I, N), 0 ≤ I < N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not I/N (e.g. 0/2)") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"{text!r}: I/N needs 0 ≤ I < N (shares are numbered from 0)")
    return index, count


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(prog="python -m regnet.analyze", description=__doc__.split("\n")[0])
    p.add_argument("dir", type=Path, help="a run or sweep directory (searched recursively for results.json)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: <dir>/analysis)")
    p.add_argument(
        "--baseline",
        default=None,
        help="variant the p-values compare against (default: no_reg, else none if the sweep has it)",
    )
    p.add_argument("--planes", type=int, default=50, help="random planes per model for TV; 0 skips decision boundaries")
    p.add_argument(
        "--zooms", type=float, nargs="+", default=[0.025, 0.01, 0.001], help="zoom levels (grid spans ±1/zoom)"
    )
    p.add_argument("--resolution", type=int, default=250, help="grid points per axis")
    p.add_argument(
        "--seed", type=int, default=0, help="seed for x0 and plane directions (identical planes for all models)"
    )
    p.add_argument("--example-planes", type=int, default=3, help="planes per model drawn in planes_<run>.png")
    p.add_argument(
        "--attacks",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="accuracy-vs-ε curves of the --attack-list, their sanity checks, and ‖J‖_F",
    )
    p.add_argument(
        "--attack-list",
        nargs="+",
        default=["fgsm", "pgd", "noise"],
        choices=ATTACKS,
        help="autoattack (standard AutoAttack: APGD-CE, APGD-T, FAB-T, Square) and square (black-box) are slow",
    )
    p.add_argument(
        "--square-queries",
        type=int,
        default=SQUARE_QUERIES,
        help="queries of Square, alone and inside AutoAttack (5000: standard AutoAttack)",
    )
    p.add_argument("--eps", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2, 0.3], help="ε (pixel units, [0, 1])")
    p.add_argument("--pgd-steps", type=int, default=10)
    p.add_argument(
        "--pgd-step-size", type=float, default=None, help="PGD step α in pixel units (default 2.5 ε / steps)"
    )
    p.add_argument("--pgd-random-start", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--n-test", type=int, default=1000, help="test samples for attacks and diagnostics")
    p.add_argument("--diagnostics", action="store_true", help="per-run confusion matrix, galleries, curves, SVs")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:1 ... (default: cuda if there is a GPU, else cpu)")
    p.add_argument("--data-root", default=None, help="override data.root of the runs (data moved since training)")
    p.add_argument("--shard", type=shard_arg, default=None, metavar="I/N",
                   help="only the I-th of N shares of the runs (from 0), into the cache, writing no tables: "
                        "run N side by side (processes, GPUs, cluster jobs), then once without --shard")  # fmt: skip
    p.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True,
                   help="keep each run's planes and attack results in <out>/cache and reuse them on the next call "
                        "with the same settings (resume after an interruption, add seeds cheaply)")  # fmt: skip
    p.add_argument(
        "--trust-checkpoints",
        action="store_true",
        help="load the runs' checkpoints with full pickle, which runs any code they hold: only for runs whose "
        "author you trust (default: weights only; the others are listed in problems.csv)",
    )
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    from regnet.analysis.boundaries import check_grid

    if args.planes < 0:
        raise ValueError(f"--planes={args.planes} is invalid: use ≥ 1, or 0 to skip decision boundaries")
    if args.planes:
        for z in args.zooms:
            check_grid(z, args.resolution)
    for e in args.eps:
        if not 0 <= e <= 1:
            raise ValueError(f"--eps {e} is invalid: ε is in pixel units, use values in [0, 1]")
    if args.n_test < 1:
        raise ValueError(f"--n-test={args.n_test} is invalid: use ≥ 1")
    if args.pgd_steps < 1:
        raise ValueError(f"--pgd-steps={args.pgd_steps} is invalid: use ≥ 1")
    if args.pgd_step_size is not None and not args.pgd_step_size > 0:
        raise ValueError(f"--pgd-step-size={args.pgd_step_size} is invalid: use a positive step (pixel units)")
    if args.square_queries < 1:
        raise ValueError(f"--square-queries={args.square_queries} is invalid: use ≥ 1")
    if args.example_planes < 0:
        raise ValueError(f"--example-planes={args.example_planes} is invalid: use ≥ 0")
    if args.device is not None:
        check_device(args.device)
    if args.shard and not args.cache:
        raise ValueError("--shard keeps its records in the cache only: drop --no-cache")
    if args.shard and args.diagnostics:
        raise ValueError("--diagnostics are not cached: run them without --shard")
    if args.data_root is not None and not Path(args.data_root).expanduser().is_dir():
        raise ValueError(f"--data-root {args.data_root} is not a directory: pass the folder that holds the datasets")


def check_device(name: str) -> None:
    """``name`` is a torch device this machine has."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device: use cpu, cuda or cuda:<index>") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} is unavailable: this machine has no CUDA GPU, use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name} is unavailable: this machine has {torch.cuda.device_count()} CUDA GPU(s)")


def analyze(args: argparse.Namespace) -> Path:
    """Check the arguments, then write the analysis (regnet/analysis/report.py); returns its directory."""
    check_args(args)
    return write_analysis(args)


def main(argv: list[str] | None = None) -> int:
    """0 when the analysis is written; 2 for bad input (arguments, no runs, dataset files missing or corrupt), 1
    for a failure during the work. Either way one line on stderr, and nothing of the analysis written."""
    from regnet.data.base import CorruptDatasetError, DatasetNotFoundError

    args = parse_args(argv)
    try:
        with to_stderr():  # the progress and problem lines; the tables go to stdout
            analyze(args)
    except DatasetNotFoundError as e:
        print(f"regnet.analyze: error: {squeeze(e)} (or point the analysis at the data with --data-root DIR)",
              file=sys.stderr)  # fmt: skip
        return 2
    except (ValueError, FileNotFoundError, CorruptDatasetError) as e:
        print(f"regnet.analyze: error: {squeeze(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # --out not writable, disk full, ...
        print(f"regnet.analyze: error: cannot write the analysis: {squeeze(e)}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 — a failure during the work (CUDA out of memory, ...): one line, exit 1
        print(f"regnet.analyze: error: the analysis failed, nothing was written: {type(e).__name__}: {squeeze(e)}",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
