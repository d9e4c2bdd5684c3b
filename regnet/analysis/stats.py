"""Statistics over seeds: mean with a Student-t 95 % interval, and Welch's t-test against a baseline.

The seed studies reported mean ± 95 % CI over n = 5 seeds. regnet uses the sample standard deviation
(ddof = 1) and the t quantile with n − 1 degrees of freedom:

    ci95 = t_{0.975, n−1} · s / √n,     s² = Σ (x_i − x̄)² / (n − 1)

(the hoffman2019_mnist notebook used the population std, ddof = 0, which understates the interval).
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
