"""The wider regularizer set, each against a direct formula on a small model; each test fails if the
regularizer were a no-op or had the wrong scale."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from regnet.module import RegNetModule
from regnet.regularizers.confidence_penalty import ConfidencePenalty
from regnet.regularizers.elastic import Elastic
from regnet.regularizers.input_noise import InputNoise
from regnet.regularizers.l1 import L1
from regnet.regularizers.label_smoothing import LabelSmoothing
from regnet.regularizers.soft_svb import SoftSVB
from regnet.regularizers.weight_noise import WeightNoise
from regnet.train import train
from tests.conftest import compose_cfg, tiny


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 4 * 4, 5), nn.Tanh(),
                         nn.Linear(5, 3))


@pytest.fixture
def batch():
    torch.manual_seed(1)
    return torch.randn(6, 1, 6, 6), torch.tensor([0, 1, 2, 0, 1, 2])


def test_l1_matches_sum_of_absolute_weights(batch):
    model = small_model()
    x, y = batch
    want = 0.3 * sum(m.weight.abs().sum() for m in model if isinstance(m, (nn.Conv2d, nn.Linear)))
    got = L1(lam=0.3).penalty(model, x, model(x), y)
    assert torch.allclose(got, want) and got > 0
    grad = torch.autograd.grad(got, model[0].weight)[0]
    assert torch.allclose(grad, 0.3 * model[0].weight.sign())


def test_elastic_is_l1_penalty_plus_weight_decay(batch):
    model = small_model()
    x, y = batch
    reg = Elastic(l1=0.2, weight_decay=1e-3)
    assert torch.allclose(reg.penalty(model, x, model(x), y), L1(lam=0.2).penalty(model, x, model(x), y))
    optimizer = RegNetModule(model, num_classes=3, regularizers=[reg]).configure_optimizers()
    assert optimizer.param_groups[0]["weight_decay"] == 1e-3


def test_soft_svb_matches_frobenius_formula(batch):
    model = small_model()
    x, y = batch
    want = 0.0
    for m in model:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight.reshape(m.weight.shape[0], -1)
            gram = w @ w.T if w.shape[0] < w.shape[1] else w.T @ w
            want = want + torch.linalg.matrix_norm(gram - torch.eye(gram.shape[0])) ** 2
    got = SoftSVB(lam=0.5).penalty(model, x, model(x), y)
    assert torch.allclose(got, 0.5 * want) and got > 0
    orthogonal = nn.Linear(4, 4, bias=False)
    nn.init.orthogonal_(orthogonal.weight)
    assert SoftSVB(lam=1.0).penalty(orthogonal, x, None, y) < 1e-10


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_label_smoothing_total_equals_torch(eps, batch):
    model = small_model()
    x, y = batch
    logits = model(x)
    total = F.cross_entropy(logits, y) + LabelSmoothing(eps).penalty(model, x, logits, y)
    assert torch.allclose(total, F.cross_entropy(logits, y, label_smoothing=eps), atol=1e-6)


def test_confidence_penalty_is_negative_entropy(batch):
    model = small_model()
    x, y = batch
    logits = model(x) * 3
    p = logits.softmax(-1)
    entropy = -(p * p.log()).sum(-1).mean()
    assert torch.allclose(ConfidencePenalty(beta=0.7).penalty(model, x, logits, y), -0.7 * entropy)


def test_input_noise_has_sigma_and_only_in_training(batch):
    x, _ = batch
    torch.manual_seed(0)
    big = torch.zeros(20000)
    noisy = InputNoise(sigma=0.25).perturb_inputs(big)
    assert abs(noisy.std().item() - 0.25) < 0.01 and abs(noisy.mean().item()) < 0.01
    module = RegNetModule(small_model(), num_classes=3, regularizers=[InputNoise(0.25)])
    module.eval()
    assert torch.equal(module(x), module.model(x))  # evaluation never sees the noise


def test_weight_noise_never_touches_weights_and_grads_reach_them(batch):
    model = small_model()
    x, y = batch
    before = [p.detach().clone() for p in model.parameters()]
    reg = WeightNoise(sigma=0.1)
    torch.manual_seed(3)
    noisy = reg.forward(model, x)
    assert not torch.allclose(noisy, model(x))  # the forward pass is perturbed...
    F.cross_entropy(noisy, y).backward()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # ...the weights are not
    assert model[0].weight.grad is not None and model[0].weight.grad.abs().sum() > 0
    # the noise has scale sigma: the output difference grows linearly with sigma for small sigma
    torch.manual_seed(4)
    d1 = (WeightNoise(1e-3).forward(model, x) - model(x)).norm()
    torch.manual_seed(4)
    d2 = (WeightNoise(2e-3).forward(model, x) - model(x)).norm()
    assert 1.9 < (d2 / d1).item() < 2.1
    module = RegNetModule(model, num_classes=3, regularizers=[reg]).eval()
    assert torch.equal(module(x), module(x))


@pytest.mark.parametrize("bad", ["reg.l1.lam=-1", "reg.label_smoothing.eps=0"])
def test_bad_values_one_line(bad):
    name = bad.split(".")[1]
    cfg = compose_cfg([f"reg={name}", bad])
    from hydra.utils import instantiate

    with pytest.raises(Exception) as err:
        instantiate(cfg.reg[name])
    assert name in str(err.value)


def test_composed_run(data_root, tmp_path):
    cfg = compose_cfg(["reg=[l2,soft_svb,label_smoothing]", f"data.root={data_root}", *tiny()],
                      return_hydra_config=True)
    results = train(cfg, tmp_path)
    assert results["reg"] == ["l2", "soft_svb", "label_smoothing"]
    assert results["metrics"]["train/soft_svb"] > 0 and results["metrics"]["train/label_smoothing"] != 0
