"""The code's layout, guarded for code to come: every file in regnet/ has one room (at most 300 lines), and
conf/reg, conf/loss and conf/model mirror their modules both ways. tests/test_configs.py checks that each YAML
targets the module of its name, tests/test_models.py that ``MODELS`` and conf/model name the same models and
each YAML targets its registered class; here each regularizer and loss module has its YAML."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import CONF, REPO

PACKAGE = REPO / "regnet"
MAX_LINES = 300
#: modules of a group's package that are no choice: the package itself and what its choices share
NO_CHOICE = {"__init__", "base"}


def yamls(group: str) -> set[str]:
    return {p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_")}


def test_no_file_in_regnet_is_over_300_lines():
    long = {
        str(p.relative_to(REPO)): n
        for p in sorted(PACKAGE.rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these by concept (at most {MAX_LINES} lines a file): {long}"


def _defines(path: Path, base: str) -> list[str]:
    """The classes in ``path`` that name ``base`` among their bases."""
    tree = ast.parse(path.read_text(), str(path))
    return [n.name for n in tree.body if isinstance(n, ast.ClassDef) and any(base in ast.unparse(b) for b in n.bases)]


@pytest.mark.parametrize(
    "group,package,base",
    [("reg", "regularizers", ("Regularizer", "WeightPenalty")), ("loss", "losses", ("BatchMeanLoss",))],
)
def test_every_regularizer_and_loss_module_has_its_yaml(group, package, base):
    """One Python file and one YAML of the same name: a module of regnet/regularizers (regnet/losses) that
    defines a regularizer (a loss) is offered as ``reg=<name>`` (``loss=<name>``), and nothing else is there."""
    modules = {p.stem for p in (PACKAGE / package).glob("*.py")} - NO_CHOICE
    assert modules == yamls(group), f"regnet/{package}/*.py and conf/{group}/*.yaml differ"
    for name in sorted(modules):
        path = PACKAGE / package / f"{name}.py"
        assert any(_defines(path, b) for b in base), f"{path.relative_to(REPO)} defines no {' or '.join(base)}"
