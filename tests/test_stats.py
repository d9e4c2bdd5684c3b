"""Student-t intervals and Welch p-values against scipy, on fabricated results."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from regnet.analysis import mean_ci, summarize, to_markdown, welch_p


def test_mean_ci_matches_scipy_t_interval():
    x = np.array([98.6, 98.9, 98.5, 98.8, 98.7])
    s = mean_ci(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))  # sem uses ddof 1
    assert s["n"] == 5 and s["mean"] == pytest.approx(x.mean())
    assert s["ci95"] == pytest.approx((hi - lo) / 2)
    assert s["std"] == pytest.approx(x.std(ddof=1))
    assert (s["min"], s["max"]) == (98.5, 98.9)
    # larger than the population-std interval the seed study used
    assert s["ci95"] > 1.96 * x.std(ddof=0) / math.sqrt(5)


def test_mean_ci_single_value_has_undefined_interval():
    s = mean_ci([0.5])
    assert s["n"] == 1 and s["mean"] == 0.5 and math.isnan(s["ci95"]) and math.isnan(s["std"])
    assert mean_ci([])["n"] == 0


def test_welch_matches_scipy():
    a, b = [1.0, 2.0, 3.5, 2.2], [2.5, 3.9, 4.1, 5.0, 3.3]
    assert welch_p(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert welch_p(a, b) != pytest.approx(stats.ttest_ind(a, b, equal_var=True).pvalue)
    assert math.isnan(welch_p([1.0], b))


def test_summarize_groups_and_compares_to_baseline():
    rng = np.random.default_rng(0)
    rows = [{"model": "lenet", "data": "mnist", "variant": v, "seed": s, "test_acc": m + 0.002 * rng.standard_normal()}
            for v, m in (("no_reg", 0.987), ("l2", 0.992)) for s in range(5)]  # fmt: skip
    df = pd.DataFrame(rows)
    t = summarize(df, "test_acc", ["model", "data", "variant"], baseline="no_reg", scale=100.0).set_index("variant")
    l2 = df[df.variant == "l2"].test_acc * 100
    base = df[df.variant == "no_reg"].test_acc * 100
    assert t.loc["l2", "mean"] == pytest.approx(l2.mean())
    assert t.loc["l2", "ci95"] == pytest.approx(stats.t.ppf(0.975, 4) * l2.std(ddof=1) / math.sqrt(5))
    assert t.loc["l2", "p_vs_no_reg"] == pytest.approx(stats.ttest_ind(l2, base, equal_var=False).pvalue)
    assert math.isnan(t.loc["no_reg", "p_vs_no_reg"])
    md = to_markdown(t.reset_index())
    assert md.splitlines()[0].startswith("| variant | model | data | n | mean | ci95 | std | min | max |")
