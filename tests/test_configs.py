"""conf/ as a whole: conf/<group> mirrors regnet/<package> (a YAML's _target_ lives in the package of the same
name), shared keys live in one base file that is not offered as a choice, and a wrong group choice names the
choices. Each group's own YAMLs are exercised in its concept's test file, parametrised over the folder:
data (test_data), augment (test_augment), loss (test_losses), sched (test_schedulers), experiment and variant
(test_experiments_studies), model (test_models), reg (test_regularizers)."""

from __future__ import annotations

import importlib

import pytest
import yaml

from regnet.errors import one_line, options
from regnet.models import MODELS
from tests.conftest import CONF, compose_cfg

MIRROR = {
    "model": "regnet.models",
    "data": "regnet.data",
    "reg": "regnet.regularizers",
    "sched": "regnet.sched",
    "logger": "regnet.loggers",
    "loss": "regnet.losses",
}


def names(group: str) -> list[str]:
    """The choices of a group (``_base_`` files hold shared keys and are no choice)."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))


def _targets(node) -> list[str]:
    """Every ``_target_`` in a YAML, outermost first."""
    if isinstance(node, dict):
        found = [node["_target_"]] if "_target_" in node else []
        return found + [t for key, value in node.items() if key != "_target_" for t in _targets(value)]
    if isinstance(node, list):
        return [t for value in node for t in _targets(value)]
    return []


def load(group: str, name: str) -> dict:
    return yaml.safe_load((CONF / group / f"{name}.yaml").read_text()) or {}


@pytest.mark.parametrize("group", sorted(MIRROR))
def test_conf_mirrors_package(group):
    for name in names(group):
        targets = _targets(load(group, name))
        if not targets:  # e.g. sched/none
            continue
        module, _, attr = targets[0].rpartition(".")
        if group == "model" and module == "regnet.models.small_cnn":  # a family file: the registry names each
            assert getattr(importlib.import_module(module), attr) is MODELS[name]
            continue
        assert module == f"{MIRROR[group]}.{name}", f"conf/{group}/{name}.yaml targets {targets[0]}"
        assert hasattr(importlib.import_module(module), attr)


def test_augment_presets_are_built_from_regnet_augment():
    """An augment YAML is a composition of ops, not one file's class: every _target_ lies in regnet/augment."""
    for name in names("augment"):
        for target in _targets(load("augment", name)):
            module, _, attr = target.rpartition(".")
            assert module.startswith("regnet.augment"), f"conf/augment/{name}.yaml targets {target}"
            assert hasattr(importlib.import_module(module), attr)


def test_data_yamls_share_one_base_that_is_no_choice():
    base = load("data", "_base_")
    shared = {"root", "batch_size", "eval_batch_size", "val_fraction", "val_seed", "seed", "on_device", "pad"}
    assert shared <= set(base)
    default = compose_cfg().data
    for name in names("data"):
        own = load("data", name)
        assert own["defaults"] == ["_base_", "_self_"]
        assert not (set(own) - {"_target_"}) & set(base), f"conf/data/{name}.yaml repeats a key of _base_"
        cfg = compose_cfg([f"data={name}"])
        assert all(cfg.data[key] == default[key] for key in base if key != "_target_")
    assert options("data") == names("data") == ["cifar10", "cifar100", "fashion_mnist", "mnist"]
    with pytest.raises(Exception) as err:
        compose_cfg(["data=imagenet"])
    assert one_line(err.value) == (
        "unknown data 'imagenet' (available: cifar10, cifar100, fashion_mnist, mnist); choose with data=<name>"
    )


@pytest.mark.parametrize("group,choice", [("loss", "mse"), ("augment", "flip")])
def test_a_wrong_choice_names_the_choices(group, choice):
    with pytest.raises(Exception) as err:
        compose_cfg([f"{group}={choice}"])
    assert one_line(err.value) == (
        f"unknown {group} '{choice}' (available: {', '.join(names(group))}); choose with {group}=<name>"
    )
