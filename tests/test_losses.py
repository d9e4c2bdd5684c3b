"""Each loss by name equals its formula written out with torch, and has the right scale."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from regnet.losses import LOSSES, get_loss


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
    assert torch.allclose(get_loss("nll")(log_probs, y), F.cross_entropy(logits, y))  # seed 003 ≡ CE
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
