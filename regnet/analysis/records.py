"""Per-run records of a sweep: each completed run's model loaded, its decision planes drawn and attacked.

``tv_records`` (one row per run, zoom and plane) and ``robustness_records`` (one row per run, attack and ε, and
the mean ‖J‖_F) are what :mod:`regnet.analysis.tables` summarises over seeds. Each run's records go through the
cache (:mod:`regnet.analysis.cache`); a run whose model cannot be rebuilt is listed in ``sweep.problems`` and
skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from regnet.analysis.attacks import SQUARE_QUERIES, PixelModel, attack_accuracy, jacobian_norms
from regnet.analysis.boundaries import PlaneSettings, boundary_records
from regnet.analysis.cache import cached, run_key
from regnet.analysis.checks import sanity_flags
from regnet.analysis.device import default_device
from regnet.analysis.runs import UNLOADABLE, Sweep, UnloadableRunError, load_run, test_inputs
from regnet.analysis.tables import KEYS
from regnet.data.base import normalize
from regnet.log import get_logger

log = get_logger(__name__)

T = TypeVar("T")
DEFAULT_EPS = (0.0, 0.05, 0.1, 0.2, 0.3)


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
            module, dm, _ = load_run(run.run_dir, device, data_root, sweep.trust_checkpoints)
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


def attack_rows(
    module,
    datamodule,
    results: dict[str, Any],
    device: str,
    attacks: Sequence[str],
    eps: Sequence[float],
    n_test: int | None,
    **settings: Any,
) -> list[dict]:
    """One loaded run (:func:`regnet.analysis.runs.load_run`) attacked: accuracy (%) under each attack and ε on
    the first ``n_test`` test images (pixel space, through the run's recorded normalisation), then the exact mean
    ‖J‖_F on the same images (``attack = jacobian_fro``). ``settings``: seed, pgd_steps, pgd_step_size,
    pgd_random_start, square_queries, as :func:`regnet.analysis.attacks.attack_accuracy` takes them."""
    norm = results.get("normalization") or {"mean": list(datamodule.mean), "std": list(datamodule.std)}
    model = PixelModel(module.model, norm["mean"], norm["std"]).to(device).eval()
    x, y = test_inputs(datamodule, n_test)
    out = []
    for attack in attacks:
        for r in attack_accuracy(model, x, y, attack, eps, **settings):
            bound = r["acc_bound"]
            out.append(r | {"acc": 100.0 * r["acc"], "acc_bound": None if bound is None else 100.0 * bound})
    j = jacobian_norms(module.model, normalize(x, norm["mean"], norm["std"]))
    return out + [
        {"attack": "jacobian_fro", "eps": None, "acc": None, "jacobian_fro": float(j.mean()), "n_test": len(x)}
    ]


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
    settings = {k: params[k] for k in ("seed", "pgd_steps", "pgd_step_size", "pgd_random_start", "square_queries")}
    for run, notes in _each_run(sweep, f"robustness on {device},", verbose):

        def compute(run=run) -> list[dict]:
            module, dm, results = load_run(run.run_dir, device, data_root, sweep.trust_checkpoints)
            return attack_rows(module, dm, results, device, attacks, eps, n_test, **settings)

        run_rows = _cached_run(sweep, run, notes, cache_dir, "robustness", params, compute)
        if run_rows is None:
            continue
        base = {k: getattr(run, k) for k in KEYS + ["seed", "run_dir"]}
        rows += [base | r for r in run_rows]
    df = pd.DataFrame(rows)
    return df.assign(flag=sanity_flags(df)) if len(df) else df
