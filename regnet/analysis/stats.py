"""Statistics over seeds: mean with a Student-t 95 % interval, Welch's t-test against a baseline, and p-values
adjusted for the number of tests a table makes (Holm 1979).

The seed studies reported mean ± 95 % CI over n = 5 seeds. regnet uses the sample standard deviation
(ddof = 1) and the t quantile with n − 1 degrees of freedom:

    ci95 = t_{0.975, n−1} · s / √n,     s² = Σ (x_i − x̄)² / (n − 1)

(the hoffman2019_mnist notebook used the population std, ddof = 0, which understates the interval).

A table of variants × attacks × ε tests many hypotheses at once, and some raw p-values fall below 0.05 by chance
alone. Every table that reports ``p_vs_<baseline>`` also reports ``p_vs_<baseline>_holm``: Holm's step-down
adjustment over the table's family (every test it reports for one model and dataset). Holm, not
Benjamini–Hochberg: the tables back individual claims ("jacobi is more robust than no_reg at ε = 0.05"), each
read on its own, so the error to bound is that of making any false claim (the family-wise error rate), not the
expected share of false ones (BH's false discovery rate). Holm bounds it under any dependence between the tests
(here they share the baseline's seeds, and the same models across attacks and ε) and is uniformly more powerful
than Bonferroni. Claim "significant at level α" only where the adjusted p-value is below α.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

SUMMARY_COLUMNS = ["n", "mean", "ci95", "std", "min", "max"]


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """n, mean, half-width of the Student-t interval, sample std (ddof 1), min, max of ``values``.

    With one value the std and interval are NaN (undefined), not zero."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = len(x)
    if n == 0:
        return {"n": 0, "mean": math.nan, "ci95": math.nan, "std": math.nan, "min": math.nan, "max": math.nan}
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    ci = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)) if n > 1 else math.nan
    return {"n": n, "mean": float(x.mean()), "ci95": ci, "std": std, "min": float(x.min()), "max": float(x.max())}


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's unequal-variance t-test (Welch 1947); NaN with fewer than 2 per side."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    with warnings.catch_warnings():  # identical values: scipy warns and returns NaN, which is the answer
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values, in the input's order. With the m finite p-values sorted,
    p_(1) ≤ … ≤ p_(m):  p̃_(i) = min(1, max_{j ≤ i} (m − j + 1) · p_(j)).  Rejecting where p̃ ≤ α keeps the
    family-wise error rate ≤ α under any dependence. NaN (no test: the baseline's own row) stays NaN and does
    not count in m."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out


def adjust_p(
    table: pd.DataFrame, family: Sequence[str] = ("model", "data"), test: pd.Series | None = None
) -> pd.DataFrame:
    """``table`` with ``<col>_holm`` after every ``p_vs_<baseline>`` column: :func:`holm` over each family, the
    rows that share the ``family`` columns (a table's tests of one model on one dataset). ``test``: a label per
    row naming the test it reports; rows of a family with the same label are one test, counted once in m (every
    attack at ε = 0 reports the same clean-accuracy test)."""
    table = table.copy()
    labels = pd.Series(range(len(table)), index=table.index) if test is None else pd.Series(list(test), table.index)
    keys = [c for c in family if c in table.columns]
    groups = list(table.groupby(keys, sort=False, dropna=False).groups.values()) if keys else [table.index]
    for col in [c for c in table.columns if c.startswith("p_vs_") and not c.endswith("_holm")]:
        adjusted = pd.Series(math.nan, index=table.index)
        for index in groups:
            first = table.loc[index, col].groupby(labels[index], sort=False).first()  # one p per test
            adjusted[index] = labels[index].map(dict(zip(first.index, holm(first.astype(float)))))
        table.insert(table.columns.get_loc(col) + 1, f"{col}_holm", adjusted)
    return table


def summarize(
    df: pd.DataFrame,
    value: str,
    by: Sequence[str],
    baseline: str | None = None,
    variant_col: str = "variant",
    scale: float = 1.0,
) -> pd.DataFrame:
    """One row per group of ``by``: SUMMARY_COLUMNS of ``value · scale``, plus ``p_vs_<baseline>`` (Welch)
    against the row with ``variant_col == baseline`` that shares the other keys of ``by``."""
    rows = []
    others = [c for c in by if c != variant_col]
    for key, group in df.groupby(list(by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        row.update(mean_ci(group[value].astype(float) * scale))
        if baseline is not None and variant_col in by:
            mask = df[variant_col] == baseline
            for c in others:
                mask &= df[c] == row[c]
            base = df.loc[mask, value].astype(float) * scale
            row[f"p_vs_{baseline}"] = (
                math.nan if row[variant_col] == baseline else welch_p(group[value].astype(float) * scale, base)
            )
        rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(df: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured markdown table (no extra dependency)."""

    def fmt(v) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.{digits}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{digits}f}"
        return str(v)

    header = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, sep, *body]) + "\n"
