"""Write a sweep's analysis directory (what ``python -m regnet.analyze`` writes; its docstring lists the files).

Every file is built in a temporary directory next to ``out`` and moved in at the end, so a failure leaves no
partial analysis; each step (accuracy, planes, attacks, diagnostics) is one function writing its files there.
Each run's plane and attack records go through the cache (:mod:`regnet.analysis.cache`); ``--shard`` computes
only the cache's records of one share of the runs and writes no tables.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from regnet.files import write_atomic
from regnet.log import get_logger

log = get_logger(__name__)


def _csv_md(df, out: Path, name: str) -> None:
    from regnet.analysis.stats import to_markdown

    write_atomic(out / f"{name}.csv", df.to_csv(index=False))
    write_atomic(out / f"{name}.md", to_markdown(df))


def _problem_lines(problems: list[dict]) -> list[str]:
    return [f"- `{p['run_dir']}`: {p['status']} {p['reason']}".rstrip() for p in problems]


def _accuracy_md(acc, sweep) -> str:
    """The accuracy table, then the runs it leaves out and those it counts but could not analyse further."""
    from regnet.analysis import UNLOADABLE, to_markdown

    text = to_markdown(acc)
    left_out = [p for p in sweep.problems if p["status"] != UNLOADABLE]
    unloadable = [p for p in sweep.problems if p["status"] == UNLOADABLE]
    if left_out:  # listed under the table too, so nobody reads n = 4 as "all five seeds"
        text += "\nNot included:\n\n" + "\n".join(_problem_lines(left_out)) + "\n"
    if unloadable:
        text += "\nCounted, but no planes, attacks or diagnostics (the model cannot be rebuilt):\n\n"
        text += "\n".join(_problem_lines(unloadable)) + "\n"
    return text


def _planes(args, sweep, stage: Path, cache_dir) -> None:
    from regnet import analysis as A
    from regnet.analysis import plots

    settings = A.PlaneSettings(tuple(args.zooms), args.planes, args.resolution, args.seed, args.example_planes)
    records, images = A.tv_records(sweep, settings, args.device, args.data_root, verbose=True, cache_dir=cache_dir)
    if not len(records):
        return
    write_atomic(stage / "tv_planes.csv", records.to_csv(index=False))
    tv = A.tv_table(records)
    _csv_md(tv, stage, "tv")
    _csv_md(A.tv_table(records, per="variant"), stage, "tv_variants")
    print(A.to_markdown(tv[["model", "data", "variant", "seed", "zoom", "tv_isotr_boundary", "tv_isotr_boundary_ci95",
                            "tv_aniso_boundary", "tv_aniso_boundary_ci95"]]))  # fmt: skip
    for name, ims in images.items():
        if ims:
            plots.save_figure(plots.plot_planes(ims, name), stage / f"planes_{name}.png")


def _attacks(args, sweep, stage: Path, cache_dir) -> None:
    from regnet import analysis as A
    from regnet.analysis import plots

    rec = A.robustness_records(sweep, args.attack_list, args.eps, args.n_test, args.device, args.data_root,
                               args.pgd_steps, args.seed, args.pgd_step_size, args.pgd_random_start,
                               verbose=True, cache_dir=cache_dir, square_queries=args.square_queries)  # fmt: skip
    if not len(rec):
        return
    write_atomic(stage / "robustness_runs.csv", rec.to_csv(index=False))
    rob = A.robustness_table(rec, args.baseline)
    checks = A.sanity_checks(rec)
    write_atomic(stage / "robustness_checks.csv", checks.to_csv(index=False))
    write_atomic(stage / "robustness.csv", rob.to_csv(index=False))
    write_atomic(stage / "robustness.md", A.to_markdown(rob) + "\nSanity checks (regnet.analysis.checks):\n\n"
                 + A.to_markdown(checks))  # fmt: skip
    print(A.to_markdown(rob))
    for c in checks[checks["status"] == "failed"].itertuples(index=False):
        log.warning(f"sanity check {c.check} failed (gradient masking?): {c.model} {c.data} {c.variant}: {c.detail}")
    for attack in args.attack_list:
        d = rob[rob["attack"] == attack]
        title = f"{attack}: accuracy vs ε (mean ± 95 % CI over seeds)"
        plots.save_figure(plots.plot_curves(d, "eps", title), stage / f"robustness_{attack}.png")


def _diagnostics(args, sweep, stage: Path) -> None:
    from regnet import analysis as A

    for run in sweep.models().itertuples(index=False):
        try:
            module, dm, _ = A.load_run(run.run_dir, args.device, args.data_root, sweep.trust_checkpoints)
        except A.UnloadableRunError as e:
            sweep.skip(run.run_dir, str(e))
            continue
        name = f"{run.model}_{run.data}_{run.variant}_{run.seed}"
        A.run_diagnostics(module, dm, run.run_dir, stage / "runs" / name, args.n_test)


def _move_in(stage: Path, out: Path) -> None:
    """Move the finished analysis from ``stage`` to ``out``: file by file (renames) if ``out`` exists, so
    unrelated files there stay."""
    if not out.exists():
        stage.replace(out)
        return
    for f in stage.iterdir():
        target = out / f.name
        if target.is_dir() and f.is_dir():
            shutil.rmtree(target)
        f.replace(target)
    shutil.rmtree(stage)


def _shard(args, sweep, cache_dir: Path) -> Path:
    """--shard: the share's plane and attack records into the cache; the tables are left to a call without it."""
    index, count = args.shard
    if not sweep.completed:
        log.info(f"shard {index}/{count}: no run (the sweep has fewer than {count} completed runs)")
        return cache_dir
    stage = Path(tempfile.mkdtemp(prefix="regnet-shard-"))
    try:
        if args.planes:
            _planes(args, sweep, stage, cache_dir)
        if args.attacks:
            _attacks(args, sweep, stage, cache_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    log.info(f"shard {index}/{count}: the records of {len(sweep.completed)} runs are in {cache_dir}; the same "
             "command without --shard writes the tables")  # fmt: skip
    return cache_dir


def write_analysis(args: argparse.Namespace) -> Path:
    """The analysis of the sweep below ``args.dir`` (arguments already checked), written into ``args.out`` (default
    ``<dir>/analysis``); returns that directory (the cache directory with ``--shard``)."""
    from regnet import analysis as A

    sweep = A.find_runs(args.dir, args.trust_checkpoints)
    out = args.out or args.dir / "analysis"
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: pass a directory (default <dir>/analysis)")
    cache_dir = out / "cache" if args.cache else None
    if not sweep.completed:
        raise A.NoRunsError(
            f"no completed runs below {args.dir}: " + "; ".join(f"{p['run_dir']} {p['status']}" for p in sweep.problems)
        )
    acc = A.accuracy_table(sweep, args.baseline)  # needs results.json only
    if args.shard:
        return _shard(args, sweep.shard(*args.shard), cache_dir)
    print(A.to_markdown(acc))
    # build everything in a temp dir next to ``out`` and move it in at the end: no partial analysis on failure
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        if args.planes:
            _planes(args, sweep, stage, cache_dir)
        if args.attacks:
            _attacks(args, sweep, stage, cache_dir)
        if args.diagnostics:
            _diagnostics(args, sweep, stage)
        write_atomic(stage / "accuracy.csv", acc.to_csv(index=False))
        write_atomic(stage / "accuracy.md", _accuracy_md(acc, sweep))
        write_atomic(stage / "problems.csv", sweep.problems_table().to_csv(index=False))
        _move_in(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    skipped = sweep.unloadable
    for p in sweep.problems:  # once the analysis is written (a failed one says only why it failed)
        log.warning(f"{p['status']}: {p['run_dir']} {p['reason']}")
    if skipped:
        log.warning(
            f"{len(skipped)} of {len(sweep.completed)} completed runs cannot be rebuilt: counted in the "
            f"accuracy table, skipped for planes, attacks and diagnostics (reasons in {out / 'problems.csv'})"
        )
    log.info(f"analysis written to {out}")
    return out
