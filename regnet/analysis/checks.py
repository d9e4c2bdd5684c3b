"""Sanity checks of a robustness evaluation: the signs of gradient masking (Athalye, Carlini & Wagner 2018;
Carlini et al. 2019, "On Evaluating Adversarial Robustness", Sec. 5.2 and 5.4).

Each check runs per trained model on its ``robustness_runs.csv`` rows (accuracy in %), with a tolerance of one
test image (100 / n_test points), and flags the rows where it fails:

- ``rises_with_eps``: a white-box attack leaves more images correct at a larger ε than at a smaller one; a
  working attack's accuracy only falls as ε grows.
- ``above_bound``: at ε ≥ 0.5 an iterative attack (PGD, AutoAttack, Square) leaves the accuracy above the bound
  any working attack reaches (``acc_bound``, :func:`regnet.analysis.attacks.accuracy_bound`: the share of
  images of the class the model gives the all-grey image, ≈ 10 %): accuracy must fall towards 0 as ε grows
  ("unbounded attacks reach 100 % success", Sec. 5.4). Not FGSM: one step of ε = 0.5 saturates the pixels
  instead of walking to the grey image, so a sound model can keep FGSM above the bound.
- ``black_box_stronger``: the black-box Square leaves fewer images correct than the best gradient attack
  (FGSM, PGD) at the same ε; gradients that mislead the white-box attacks are the classic sign of masking.
"""

from __future__ import annotations

import pandas as pd

WHITE_BOX = ("fgsm", "pgd", "autoattack")
GRADIENT = ("fgsm", "pgd")  # gradient-only attacks; AutoAttack runs Square itself, so it is never weaker
BLACK_BOX = ("square",)
ITERATIVE = ("pgd", "autoattack", "square")  # the attacks that must reach the ε ≥ 0.5 bound
CHECKS = ("rises_with_eps", "above_bound", "black_box_stronger")
RUN = ["model", "data", "variant", "seed", "run_dir"]


def sanity_flags(records: pd.DataFrame) -> pd.Series:
    """One string per row of ``records``: the checks that row fails, joined by ';' ('' where all pass)."""
    flags: dict[int, set[str]] = {i: set() for i in records.index}
    att = records[records["attack"].isin(WHITE_BOX + BLACK_BOX) & records["eps"].notna()]
    for _, run in att.groupby(RUN, sort=False, dropna=False):
        tol = 100.0 / run["n_test"].max()
        for attack, g in run.groupby("attack"):
            if attack in WHITE_BOX:
                lowest = float("inf")
                for i, row in g.sort_values("eps").iterrows():
                    if row["acc"] > lowest + tol:
                        flags[i].add("rises_with_eps")
                    lowest = min(lowest, row["acc"])
            if attack in ITERATIVE:
                for i, row in g.iterrows():
                    if pd.notna(row.get("acc_bound")) and row["acc"] > row["acc_bound"] + tol:
                        flags[i].add("above_bound")
        gradient = run[run["attack"].isin(GRADIENT)].groupby("eps")["acc"].min()
        for i, row in run[run["attack"].isin(BLACK_BOX)].iterrows():
            if row["eps"] > 0 and row["eps"] in gradient.index and row["acc"] < gradient[row["eps"]] - tol:
                flags[i].add("black_box_stronger")
    return pd.Series({i: ";".join(sorted(f)) for i, f in flags.items()}, dtype=object).reindex(records.index)


def sanity_checks(records: pd.DataFrame) -> pd.DataFrame:
    """model, data, variant, check, status (passed | failed | not run), detail: every check for every variant,
    so a table without Square or without an ε ≥ 0.5 says which checks it could not make."""
    flags = (records["flag"] if "flag" in records else sanity_flags(records)).fillna("")
    att = records.assign(flag=flags)
    att = att[att["eps"].notna()]
    rows = []
    for (model, data, variant), g in att.groupby(["model", "data", "variant"], sort=True):
        attacks = set(g["attack"])
        runnable = {
            "rises_with_eps": (attacks & set(WHITE_BOX)) and g["eps"].nunique() > 1,
            "above_bound": (attacks & set(ITERATIVE)) and (g["eps"] >= 0.5).any(),
            "black_box_stronger": (attacks & set(BLACK_BOX)) and (attacks & set(GRADIENT)),
        }
        hint = {
            "rises_with_eps": "needs a white-box attack at ≥ 2 values of ε",
            "above_bound": "needs pgd, autoattack or square at an ε ≥ 0.5 in --eps",
            "black_box_stronger": "needs square and fgsm or pgd",
        }
        for check in CHECKS:
            failed = g[g["flag"].str.split(";").apply(lambda f, c=check: c in f)]
            if not runnable[check]:
                status, detail = "not run", hint[check]
            elif len(failed):
                status = "failed"
                detail = ", ".join(f"{r.attack} ε={r.eps:g} seed {r.seed}: {r.acc:.1f} %" for r in failed.itertuples())
            else:
                status, detail = "passed", ""
            rows.append({"model": model, "data": data, "variant": variant, "check": check, "status": status,
                         "detail": detail})  # fmt: skip
    return pd.DataFrame(rows, columns=["model", "data", "variant", "check", "status", "detail"])
