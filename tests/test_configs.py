"""Nothing in conf/ exists untested: every reg/experiment/variant YAML composes, builds and trains a few steps,
and conf/<group> mirrors regnet/<package> (a YAML's _target_ lives in the package of the same name)."""

from __future__ import annotations

import importlib

import pytest
import yaml
from hydra.utils import instantiate

from regnet.models import MODELS
from regnet.regularizers.base import Regularizer
from regnet.train import train
from tests.conftest import CONF, compose_cfg, tiny

MIRROR = {"model": "regnet.models", "data": "regnet.data", "reg": "regnet.regularizers", "sched": "regnet.sched",
          "logger": "regnet.loggers"}


def names(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _target(node):
    if isinstance(node, dict):
        if "_target_" in node:
            return node["_target_"]
        for value in node.values():
            found = _target(value)
            if found:
                return found
    return None


@pytest.mark.parametrize("group", sorted(MIRROR))
def test_conf_mirrors_package(group):
    for name in names(group):
        target = _target(yaml.safe_load((CONF / group / f"{name}.yaml").read_text()) or {})
        if target is None:  # e.g. sched/none
            continue
        module, _, attr = target.rpartition(".")
        if group == "model" and module == "regnet.models.small_cnn":  # a family file: the registry names each
            assert getattr(importlib.import_module(module), attr) is MODELS[name]
            continue
        assert module == f"{MIRROR[group]}.{name}", f"conf/{group}/{name}.yaml targets {target}"
        assert hasattr(importlib.import_module(module), attr)


@pytest.mark.parametrize("reg", names("reg"))
def test_every_regularizer_builds_and_trains(reg, data_root, tmp_path):
    cfg = compose_cfg([f"reg={reg}", f"data.root={data_root}", *tiny("trainer.limit_train_batches=2")],
                      return_hydra_config=True)
    (built,) = [instantiate(r) for r in cfg.reg.values()]
    assert isinstance(built, Regularizer) and built.name == reg
    results = train(cfg, tmp_path)
    assert results["status"] == "completed" and results["reg"] == [reg]


@pytest.mark.parametrize("experiment", names("experiment"))
def test_every_experiment_composes(experiment):
    cfg = compose_cfg([f"experiment={experiment}"])
    assert cfg.task_name == experiment
    assert cfg.variant is not None
    instantiate(cfg.model)


@pytest.mark.parametrize("variant", names("variant"))
def test_every_variant_belongs_to_an_experiment(variant):
    """A variant refines some experiment: composing the two records the variant's name."""
    composed = []
    for experiment in names("experiment"):
        try:
            cfg = compose_cfg([f"experiment={experiment}", f"variant={variant}"])
        except Exception:  # a variant may set keys only its own experiment's model has
            continue
        composed.append(cfg.variant == variant)
    assert composed and all(composed)
