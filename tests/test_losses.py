"""Losses (``loss=<name>``, conf/loss ↔ regnet/losses): each equals its formula written out with torch and has the
right scale; each takes class indices or a target distribution; ``reg=label_smoothing`` smooths the targets of
whichever loss is in use."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from regnet.build import build
from regnet.losses import LOSSES, get_loss
from regnet.regularizers.label_smoothing import LabelSmoothing
from tests.conftest import CONF, compose_cfg


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 10, generator=g) * 3  # (N, C)
    targets = torch.randint(0, 10, (16,), generator=g)  # (N,)
    return logits, targets


def test_cross_entropy_is_mean_negative_log_softmax(batch):
    logits, y = batch
    direct = -(logits.log_softmax(dim=1)[torch.arange(len(y)), y]).mean()
    assert torch.allclose(get_loss("cross_entropy")(logits, y), direct)


def test_nll_takes_log_probabilities(batch):
    logits, y = batch
    log_probs = logits.log_softmax(dim=1)
    direct = -log_probs[torch.arange(len(y)), y].mean()
    assert torch.allclose(get_loss("nll")(log_probs, y), direct)
    assert torch.allclose(get_loss("nll")(log_probs, y), F.cross_entropy(logits, y))  # convnet_ablation: ≡ CE
    assert torch.allclose(get_loss("nll")(logits, y), -logits[torch.arange(len(y)), y].mean())  # no softmax of its own


def test_bce_onehot_is_softmax_then_bce_on_one_hot(batch):
    logits, y = batch
    p = logits.softmax(dim=1)
    t = F.one_hot(y, 10).float()
    direct = -(t * p.log() + (1 - t) * (1 - p).log()).mean()  # mean over N·C elements
    loss = get_loss("bce_onehot")(logits, y)
    assert torch.allclose(loss, direct, atol=1e-6)
    assert torch.allclose(loss, torch.nn.BCELoss()(torch.nn.Softmax(dim=1)(logits), t))  # the study's modules
    # scale: uniform outputs give −(1/C)[log(1/C) + (C−1) log(1 − 1/C)]
    uniform = get_loss("bce_onehot")(torch.zeros(4, 10), torch.zeros(4, dtype=torch.long))
    assert math.isclose(uniform.item(), -(math.log(0.1) + 9 * math.log(0.9)) / 10, rel_tol=1e-6)


def test_bce_onehot_gradient_finite_for_saturated_logits_and_under_autocast():
    logits = torch.tensor([[80.0, -80.0, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    y = torch.tensor([1, 2])
    get_loss("bce_onehot")(logits, y).backward()
    assert torch.isfinite(logits.grad).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = get_loss("bce_onehot")(logits.detach(), y)  # F.binary_cross_entropy refuses autocast by itself
    assert out.dtype == torch.float32


def test_registry_and_error():
    assert {"cross_entropy", "nll", "bce_onehot"} <= set(LOSSES)
    with pytest.raises(ValueError, match=r"loss='mse' is unknown: use one of \[.*'bce_onehot'"):
        get_loss("mse")


def outputs_for(name: str, logits):
    """What the model gives each loss: log-probabilities for nll (model.log_softmax=true), else logits."""
    return logits.log_softmax(dim=1) if name == "nll" else logits


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "loss").glob("*.yaml")))
def test_every_loss_yaml_composes_and_builds_its_loss(name, batch):
    """``loss=<name>`` reaches the module: the YAML's _target_ is the loss of that name."""
    cfg = compose_cfg([f"loss={name}"])
    assert cfg.loss._target_ == f"regnet.losses.{name}.{LOSSES[name].__name__}"
    module, _, _ = build(cfg)
    assert type(module.loss_fn) is LOSSES[name]
    logits, y = batch
    assert torch.equal(module.loss_fn(outputs_for(name, logits), y), get_loss(name)(outputs_for(name, logits), y))


def test_a_config_written_before_loss_was_a_group_still_builds():
    """Older runs' results.json say ``loss: nll``: analysis rebuilds them."""
    assert type(get_loss("nll")) is LOSSES["nll"]
    assert type(get_loss(compose_cfg(["loss=nll"]).loss)) is LOSSES["nll"]


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_targets_may_be_a_distribution(name, batch):
    """One-hot float targets give the class-index loss; a mixture of targets gives the mixture of losses."""
    logits, y = batch
    out, loss = outputs_for(name, logits), get_loss(name)
    onehot = F.one_hot(y, 10).float()
    assert torch.allclose(loss(out, onehot), loss(out, y), atol=1e-6)
    other = torch.roll(y, 1)
    mixed = 0.7 * onehot + 0.3 * F.one_hot(other, 10).float()
    assert torch.allclose(loss(out, mixed), 0.7 * loss(out, y) + 0.3 * loss(out, other), atol=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_label_smoothing_smooths_the_targets_of_the_loss_in_use(name, batch):
    """loss + penalty = the same loss against (1 − ε)·onehot + ε/C, through the config (``loss: ${loss}``)."""
    eps = 0.2
    cfg = compose_cfg(["reg=label_smoothing", f"reg.label_smoothing.eps={eps}", f"loss={name}"])
    smoothing = instantiate(cfg.reg.label_smoothing)
    assert type(smoothing.loss) is LOSSES[name]
    logits, y = batch
    out, loss = outputs_for(name, logits), get_loss(name)
    total = loss(out, y) + smoothing.penalty(None, None, out, y)
    smoothed = (1 - eps) * F.one_hot(y, 10).float() + eps / 10
    assert torch.allclose(total, loss(out, smoothed), atol=1e-6)
    if name == "cross_entropy":
        assert torch.allclose(total, F.cross_entropy(logits, y, label_smoothing=eps), atol=1e-6)
    if name == "bce_onehot":  # the BCE of the study, not a cross-entropy term on top of it
        p, t = logits.softmax(dim=1), smoothed
        assert torch.allclose(total, -(t * p.log() + (1 - t) * (1 - p).log()).mean(), atol=1e-6)


@pytest.mark.parametrize("eps", [0, 1.0, 1.5, -0.1, "abc"])
def test_label_smoothing_eps_outside_open_unit_interval_is_refused(eps):
    """ε = 1 trains against uniform targets, which carry no label: refused like ε = 0."""
    with pytest.raises(ValueError, match=r"reg.label_smoothing.eps=.* is invalid: it must lie in \(0, 1\)"):
        LabelSmoothing(eps)
