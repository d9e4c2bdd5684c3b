"""Sweep-level tables: accuracy over seeds, total variation over planes, robustness and Jacobian norms.

These are what ``python -m regnet.analyze`` writes and what the notebooks call; each returns a DataFrame.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from regnet.analysis.attacks import SQUARE_QUERIES, PixelModel, attack_accuracy, jacobian_norms
from regnet.analysis.boundaries import PlaneSettings, boundary_records
from regnet.analysis.cache import cached, run_key
from regnet.analysis.checks import sanity_flags
from regnet.analysis.device import default_device
from regnet.analysis.runs import UNLOADABLE, Sweep, UnloadableRunError, load_run, test_inputs
from regnet.analysis.stats import adjust_p, mean_ci, summarize
from regnet.data.base import normalize
from regnet.log import get_logger

log = get_logger(__name__)

KEYS = ["model", "data", "variant"]
T = TypeVar("T")
DEFAULT_EPS = (0.0, 0.05, 0.1, 0.2, 0.3)


DEFAULT_BASELINES = ("no_reg", "none")  # the study's baseline variant; runs without a variant


def accuracy_table(sweep: Sweep, baseline: str | None = None) -> pd.DataFrame:
    """model, data, variant, n, mean, ci95, std, min, max (test accuracy in %), p_vs_<baseline>: Welch's t-test of
    each variant against ``baseline`` on the same model and data, and ``p_vs_<baseline>_holm``: the same adjusted
    (Holm) over the table's variants of that model and data (:mod:`regnet.analysis.stats` says why Holm).

    ``baseline=None`` takes ``no_reg`` if the sweep has it, else ``none`` (runs without a variant), else leaves
    the p-values out. A named baseline that no completed run has is a ValueError (a typo would otherwise give a
    column of NaN)."""
    runs = sweep.table().dropna(subset=["test_acc"])
    return adjust_p(
        summarize(runs, "test_acc", KEYS, baseline=resolve_baseline(runs["variant"], baseline), scale=100.0)
    )


def resolve_baseline(variants: Iterable[str], baseline: str | None) -> str | None:
    """The variant p-values compare against: ``baseline``, or with None the first of DEFAULT_BASELINES present
    (None if neither is). A named baseline that is not among ``variants`` is a ValueError."""
    variants = set(variants)
    if baseline is None:
        return next((b for b in DEFAULT_BASELINES if b in variants), None)
    if baseline not in variants:
        raise ValueError(f"baseline {baseline!r} is not a variant of this sweep: use one of {sorted(variants)}")
    return baseline


def _each_run(sweep: Sweep, what: str, verbose: bool) -> Iterator[tuple[Any, list[str]]]:
    """The completed runs whose model can be rebuilt, each with a list the caller may append a note to
    ("cached"); with ``verbose``, one stderr line per finished run (these loops take minutes)."""
    runs = list(sweep.models().sort_values(KEYS + ["seed"]).itertuples(index=False))
    start = time.perf_counter()
    for i, run in enumerate(runs, 1):
        notes: list[str] = []
        yield run, notes
        if verbose:
            elapsed = time.perf_counter() - start
            left = elapsed / i * (len(runs) - i)
            noted = "".join(f" [{n}]" for n in notes)
            log.info(f"{what} {i}/{len(runs)}: {run.model} {run.data} {run.variant} seed {run.seed}{noted}"
                     f" ({elapsed:.0f} s, ~{left:.0f} s left)")  # fmt: skip


def _cached_run(
    sweep: Sweep, run, notes: list[str], cache_dir, kind: str, params: dict, compute: Callable[[], T]
) -> T | None:
    """``compute()`` for one run, through the cache; None when the run turns out unloadable (a truncated
    checkpoint, say): it is then listed in ``sweep.problems`` and left out of every later step."""
    try:
        value, hit = cached(cache_dir, kind, run_key(run.run_dir, sweep.root) | params, compute)
    except UnloadableRunError as e:
        sweep.skip(run.run_dir, str(e))
        notes.append(f"skipped, {UNLOADABLE}: {e}")
        return None
    notes += ["cached"] if hit else []
    return value


def tv_records(
    sweep: Sweep,
    settings: PlaneSettings = PlaneSettings(),
    device: str | None = None,
    data_root: str | None = None,
    verbose: bool = False,
    cache_dir: str | Path | None = None,
) -> tuple[pd.DataFrame, dict[str, list[dict]]]:
    """One row per (run, zoom, plane), all runs of one dataset on the planes ``settings`` draws. ``cache_dir``:
    keep each run's records there and reuse them (:mod:`regnet.analysis.cache`)."""
    frames, images, device = [], {}, device or default_device()
    for run, notes in _each_run(sweep, f"decision planes on {device},", verbose):

        def compute(run=run) -> tuple[list[dict], list[dict]]:
            module, dm, _ = load_run(run.run_dir, device, data_root)
            x, _ = test_inputs(dm)
            return boundary_records(module.model, normalize(x, dm.mean, dm.std), settings)

        value = _cached_run(sweep, run, notes, cache_dir, "tv", settings.key(), compute)
        if value is None:
            continue
        recs, ims = value
        df = pd.DataFrame(recs)
        for k in KEYS + ["seed", "run_dir"]:
            df[k] = getattr(run, k)
        frames.append(df)
        images[f"{run.model}_{run.data}_{run.variant}_{run.seed}"] = ims
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), images


TV_COLUMNS = (
    "tv_isotr_boundary",
    "tv_aniso_boundary",
    "tv_isotr_labels",
    "tv_aniso_labels",
    "boundary_length",
    "distance",
)


def tv_table(records: pd.DataFrame, per: str = "run") -> pd.DataFrame:
    """Mean ± 95 % CI over planes of every TV column, per model (``per="run"``: each trained model, as the
    study's Tables 2/3) or per variant (``per="variant"``: pooled over seeds), and zoom. Parameters kept."""
    keys = KEYS + (["seed"] if per == "run" else []) + ["zoom", "resolution"]
    rows = []
    for key, g in records.groupby(keys, sort=True):
        row = dict(zip(keys, key)) | {"planes": int(g["plane"].nunique()), "plane_seed": g["plane_seed"].iloc[0]}
        for col in TV_COLUMNS:
            s = mean_ci(g[col].replace([float("inf")], float("nan")))
            row[col] = s["mean"]
            row[f"{col}_ci95"] = s["ci95"]
        rows.append(row)
    return pd.DataFrame(rows)


def robustness_records(
    sweep: Sweep,
    attacks: Sequence[str] = ("fgsm", "pgd", "noise"),
    eps: Sequence[float] = DEFAULT_EPS,
    n_test: int | None = 1000,
    device: str | None = None,
    data_root: str | None = None,
    pgd_steps: int = 10,
    seed: int = 0,
    pgd_step_size: float | None = None,
    pgd_random_start: bool = True,
    verbose: bool = False,
    cache_dir: str | Path | None = None,
    square_queries: int = SQUARE_QUERIES,
) -> pd.DataFrame:
    """Accuracy (%) under each attack and ε, and the exact mean ‖J‖_F on the same test inputs, per run; a
    ``flag`` column names the sanity checks a row fails (:mod:`regnet.analysis.checks`).
    ``cache_dir``: keep each run's rows there and reuse them (:mod:`regnet.analysis.cache`)."""
    rows, device = [], device or default_device()
    params = {"attacks": list(attacks), "eps": [float(e) for e in eps], "n_test": n_test,
              "pgd_steps": pgd_steps, "seed": seed, "pgd_step_size": pgd_step_size,
              "pgd_random_start": pgd_random_start, "square_queries": square_queries}  # fmt: skip
    for run, notes in _each_run(sweep, f"robustness on {device},", verbose):

        def compute(run=run) -> list[dict]:
            module, dm, results = load_run(run.run_dir, device, data_root)
            norm = results.get("normalization") or {"mean": list(dm.mean), "std": list(dm.std)}
            model = PixelModel(module.model, norm["mean"], norm["std"]).to(device).eval()
            x, y = test_inputs(dm, n_test)
            out = []
            for attack in attacks:
                for r in attack_accuracy(model, x, y, attack, eps, seed=seed, pgd_steps=pgd_steps,
                                         pgd_step_size=pgd_step_size, pgd_random_start=pgd_random_start,
                                         square_queries=square_queries):  # fmt: skip
                    bound = r["acc_bound"]
                    out.append(r | {"acc": 100.0 * r["acc"], "acc_bound": None if bound is None else 100.0 * bound})
            j = jacobian_norms(module.model, normalize(x, norm["mean"], norm["std"]))
            return out + [
                {"attack": "jacobian_fro", "eps": None, "acc": None, "jacobian_fro": float(j.mean()), "n_test": len(x)}
            ]

        run_rows = _cached_run(sweep, run, notes, cache_dir, "robustness", params, compute)
        if run_rows is None:
            continue
        base = {k: getattr(run, k) for k in KEYS + ["seed", "run_dir"]}
        rows += [base | r for r in run_rows]
    df = pd.DataFrame(rows)
    return df.assign(flag=sanity_flags(df)) if len(df) else df


def robustness_table(records: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """Accuracy-vs-ε per variant: mean ± 95 % CI over seeds (attack rows), and mean ‖J‖_F over seeds, with
    ``p_vs_<baseline>`` (Welch) against the baseline variant at the same attack and ε (``baseline`` as in
    :func:`accuracy_table`), and ``p_vs_<baseline>_holm``: adjusted (Holm) over every test of the table for one
    model and data (variants × attacks × ε, the clean accuracy once, and ‖J‖_F). ``flag``: the sanity checks
    that fail, with the seeds they fail for ("rises_with_eps (seed 1)")."""
    if "flag" not in records:
        records = records.assign(flag=sanity_flags(records))
    baseline = resolve_baseline(records["variant"], baseline)
    att = records[records["attack"] != "jacobian_fro"]
    table = summarize(att, "acc", KEYS + ["attack", "eps"], baseline=baseline)
    flags = {}
    for key, g in att.groupby(KEYS + ["attack", "eps"], sort=True):
        failing = {}
        for seed, f in zip(g["seed"], g["flag"].fillna("")):
            for name in filter(None, f.split(";")):
                failing.setdefault(name, []).append(str(seed))
        flags[key] = "; ".join(f"{n} (seed {', '.join(s)})" for n, s in sorted(failing.items()))
    table["flag"] = [flags.get(tuple(r), "") for r in table[KEYS + ["attack", "eps"]].itertuples(index=False)]
    jac = records[records["attack"] == "jacobian_fro"]
    if len(jac):
        jt = summarize(jac, "jacobian_fro", KEYS, baseline=baseline).assign(
            attack="jacobian_fro", eps=float("nan"), flag=""
        )
        table = pd.concat([table, jt], ignore_index=True)
    clean = table["eps"] == 0  # every attack at ε = 0 is the clean accuracy: one test, counted once
    test = [f"{v} {a} {e}" for v, a, e in zip(table["variant"], table["attack"].where(~clean, "clean"), table["eps"])]
    return adjust_p(table, test=test)
