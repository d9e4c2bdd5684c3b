"""Sweep-level tables: accuracy over seeds, total variation over planes, robustness and Jacobian norms.

These are what ``python -m regnet.analyze`` writes and what the notebooks call; each returns a DataFrame,
computed from ``results.json`` (accuracy) or from the per-run records of :mod:`regnet.analysis.records`
(planes, attacks). Nothing here loads a model.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from regnet.analysis.checks import sanity_flags
from regnet.analysis.runs import Sweep
from regnet.analysis.stats import adjust_p, mean_ci, summarize

KEYS = ["model", "data", "variant"]  # a table row: one model on one dataset with one variant
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
