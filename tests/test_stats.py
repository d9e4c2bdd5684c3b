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


def test_holm_matches_the_step_down_formula_and_leaves_untested_rows_out():
    """Holm (1979) by hand on four p-values (R's p.adjust(c(.01, .04, .03, .005), "holm") gives the same), one
    NaN (the baseline's own row) that neither gets a value nor counts in m."""
    from regnet.analysis.stats import holm

    adjusted = holm([0.01, 0.04, math.nan, 0.03, 0.005])
    # sorted .005 .01 .03 .04 → 4·.005, 3·.01, 2·.03, 1·.04 → running max .02 .03 .06 .06
    assert adjusted[[0, 1, 3, 4]] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[2])
    assert holm([0.5, 0.9])[1] == 1.0 and holm([0.6, 0.7]).max() <= 1.0  # capped at 1
    assert holm([]).shape == (0,) and holm([0.02]).tolist() == [0.02]  # one test: nothing to adjust


def test_holm_controls_the_family_wise_error_rate_where_raw_p_does_not():
    """20 true null hypotheses per family: raw p < 0.05 somewhere in most families, Holm in about 5 % at most."""
    from regnet.analysis.stats import holm

    rng = np.random.default_rng(0)
    p = rng.uniform(size=(2000, 20))  # p-values of true nulls are uniform
    raw_any = (p < 0.05).any(axis=1).mean()
    holm_any = (np.apply_along_axis(holm, 1, p) < 0.05).any(axis=1).mean()
    assert raw_any > 0.6 and holm_any <= 0.06


def test_adjust_p_adjusts_each_model_and_dataset_as_its_own_family():
    from regnet.analysis.stats import adjust_p, holm

    table = pd.DataFrame({"model": ["a", "a", "a", "b", "b"], "data": ["x"] * 5,
                          "variant": ["no_reg", "l2", "svb", "no_reg", "l2"],
                          "p_vs_no_reg": [math.nan, 0.02, 0.03, math.nan, 0.02], "flag": [""] * 5})  # fmt: skip
    out = adjust_p(table)
    assert list(out.columns) == ["model", "data", "variant", "p_vs_no_reg", "p_vs_no_reg_holm", "flag"]
    assert out["p_vs_no_reg_holm"].tolist()[1:3] == pytest.approx(holm([0.02, 0.03]).tolist())  # m = 2 in model a
    assert out["p_vs_no_reg_holm"].iloc[4] == pytest.approx(0.02)  # model b: one test
    assert out["p_vs_no_reg_holm"].iloc[[0, 3]].isna().all()
    assert "p_vs_no_reg_holm" not in table  # the caller's table is left as it was


def test_accuracy_table_reports_holm_p_that_can_change_a_verdict(tmp_path):
    """Two variants 2.6 points above the baseline: each raw p ≈ 0.03 < 0.05; Holm over the two tests doubles
    the smaller one, ≈ 0.06 > 0.05, so neither is significant at 5 % any more."""
    from regnet.analysis.runs import Sweep
    from regnet.analysis.tables import accuracy_table

    base = [0.50, 0.51, 0.52, 0.53, 0.54]
    runs = [{"status": "completed", "model": "lenet", "data": "mnist", "variant": v, "seed": s,
             "test_acc": a + shift, "run_dir": str(tmp_path / f"{v}{s}")}
            for v, shift in (("no_reg", 0.0), ("l2", 0.026), ("svb", 0.026)) for s, a in enumerate(base)]  # fmt: skip
    table = accuracy_table(Sweep(tmp_path, runs)).set_index("variant")
    for v in ("l2", "svb"):
        assert table.loc[v, "p_vs_no_reg"] < 0.05 < table.loc[v, "p_vs_no_reg_holm"]
        assert table.loc[v, "p_vs_no_reg_holm"] == pytest.approx(2 * table.loc[v, "p_vs_no_reg"])
    assert math.isnan(table.loc["no_reg", "p_vs_no_reg_holm"])


def test_robustness_table_adjusts_over_variants_attacks_and_eps():
    """One family per model and data: every (variant, attack, ε) test of the table; a large effect survives."""
    from regnet.analysis.stats import holm
    from regnet.analysis.tables import robustness_table

    rng = np.random.default_rng(1)
    rows = []
    for variant, shift in (("no_reg", 0.0), ("jacobi", 30.0), ("l2", 0.0)):
        for seed in range(5):
            base = {"model": "lenet", "data": "mnist", "variant": variant, "seed": seed, "run_dir": f"{variant}{seed}",
                    "n_test": 100}  # fmt: skip
            for eps in (0.05, 0.1, 0.2):
                acc = 40.0 + shift + 3.0 * rng.standard_normal()
                rows.append(base | {"attack": "pgd", "eps": eps, "acc": acc, "acc_bound": 100.0})
    table = robustness_table(pd.DataFrame(rows))
    raw, adjusted = table["p_vs_no_reg"].to_numpy(), table["p_vs_no_reg_holm"].to_numpy()
    assert np.allclose(adjusted, holm(raw), equal_nan=True)  # one family: all 6 tests of lenet on mnist
    tested = ~np.isnan(raw)
    assert tested.sum() == 6 and (adjusted[tested] >= raw[tested]).all()
    jacobi = table[table["variant"] == "jacobi"]
    assert (jacobi["p_vs_no_reg_holm"] < 0.05).all()  # a real effect survives the adjustment


def test_robustness_table_counts_the_clean_accuracy_test_once():
    """Every attack at ε = 0 reports the same test (clean accuracy): with two attacks, the family has 3 tests
    (clean, fgsm 0.1, pgd 0.1), not 4, and both ε = 0 rows carry the same adjusted p."""
    from regnet.analysis.stats import holm
    from regnet.analysis.tables import robustness_table

    clean, fgsm, pgd = (90.0, 91.0, 92.0, 90.5, 91.5), (40.0, 42.0, 41.0, 43.0, 44.0), (5.0, 6.0, 4.0, 7.0, 5.5)
    rows = []
    for variant, d in (("no_reg", 0.0), ("l2", 2.0)):
        for seed in range(5):
            base = {"model": "lenet", "data": "mnist", "variant": variant, "seed": seed, "run_dir": f"{variant}{seed}",
                    "n_test": 100, "acc_bound": 100.0}  # fmt: skip
            for attack, eps, acc in (("fgsm", 0.0, clean), ("fgsm", 0.1, fgsm), ("pgd", 0.0, clean), ("pgd", 0.1, pgd)):
                rows.append(base | {"attack": attack, "eps": eps, "acc": acc[seed] + d * (seed % 2 + eps * 10)})
    table = robustness_table(pd.DataFrame(rows)).set_index(["variant", "attack", "eps"]).loc["l2"]
    raw = [table.loc[("fgsm", 0.0), "p_vs_no_reg"], table.loc[("fgsm", 0.1), "p_vs_no_reg"],
           table.loc[("pgd", 0.1), "p_vs_no_reg"]]  # fmt: skip
    expected = holm(raw)
    assert table.loc[("fgsm", 0.0), "p_vs_no_reg_holm"] == pytest.approx(expected[0])
    assert table.loc[("pgd", 0.0), "p_vs_no_reg_holm"] == pytest.approx(expected[0])
    assert table.loc[("fgsm", 0.1), "p_vs_no_reg_holm"] == pytest.approx(expected[1])
    assert table.loc[("pgd", 0.1), "p_vs_no_reg_holm"] == pytest.approx(expected[2])
