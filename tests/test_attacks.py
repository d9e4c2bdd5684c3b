"""Attacks on a linear model, where FGSM's effect is computable by hand; ‖J‖_F against the regularizer."""

import pytest
import torch
from torch import nn

from regnet.analysis import PixelModel, attack_accuracy, fgsm, gaussian_noise, jacobian_norms, pgd
from regnet.regularizers.jacobian import jacobian_penalty


def linear(d=12, classes=2, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, classes))


def margin(model, x, y):
    z = model(x)
    return z.gather(1, y[:, None]).squeeze(1) - z.gather(1, (1 - y)[:, None]).squeeze(1)


def test_fgsm_lowers_a_linear_margin_by_eps_times_l1_norm():
    model = linear()
    w = model[1].weight.detach()  # (2, 12)
    x = torch.full((3, 1, 3, 4), 0.5)
    y = torch.tensor([0, 1, 0])
    eps = 0.1
    x_adv = fgsm(model, x, y, eps)
    dw = (w[0] - w[1]).abs().sum()  # ‖w_y − w_other‖₁ is the same for both classes
    with torch.no_grad():
        assert torch.allclose(margin(model, x, y) - margin(model, x_adv, y), eps * dw.expand(3), atol=1e-5)
    assert (x_adv - x).abs().max() == pytest.approx(eps)


def test_attacks_clamp_to_pixel_range_and_stay_in_ball():
    model = linear()
    x = torch.rand(8, 1, 3, 4, generator=torch.Generator().manual_seed(0))
    x[0] = 1.0
    x[1] = 0.0
    y = torch.randint(0, 2, (8,))
    for adv in (fgsm(model, x, y, 0.3), pgd(model, x, y, 0.3, steps=5), gaussian_noise(x, 0.5)):
        assert adv.min() >= 0 and adv.max() <= 1
    adv = pgd(model, x, y, 0.05, steps=5)
    assert (adv - x).abs().max() <= 0.05 + 1e-6
    assert torch.equal(fgsm(model, x, y, 0.0), x)


def test_pgd_reaches_the_linear_optimum():
    model = linear()
    x = torch.full((4, 1, 3, 4), 0.5)
    y = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        m_fgsm = margin(model, fgsm(model, x, y, 0.1), y)
        m_pgd = margin(model, pgd(model, x, y, 0.1, steps=20, random_start=True), y)
    assert torch.allclose(m_pgd, m_fgsm, atol=1e-5)  # the L∞ optimum of a linear margin is FGSM's corner


def test_pixel_model_normalises_and_attack_accuracy_drops():
    model = linear()
    pix = PixelModel(nn.Identity(), [0.5], [0.25])
    assert torch.allclose(pix(torch.ones(1, 1, 2, 2)), torch.full((1, 1, 2, 2), 2.0))
    x = torch.rand(64, 1, 3, 4, generator=torch.Generator().manual_seed(1))
    y = model(x).argmax(1).detach()  # the model is right on every clean input
    rows = attack_accuracy(model, x, y, "fgsm", [0.0, 1.0], batch_size=16)
    assert rows[0]["acc"] == 1.0 and rows[1]["acc"] < 0.5
    with pytest.raises(ValueError, match="attack='cw'"):
        attack_accuracy(model, x, y, "cw", [0.1])


def test_jacobian_norm_is_exact():
    model = linear(classes=3)
    x = torch.rand(5, 1, 3, 4)
    assert torch.allclose(jacobian_norms(model, x), model[1].weight.norm().expand(5), atol=1e-5)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 4))
    xr = torch.randn(6, 1, 3, 4, requires_grad=True)
    half_mean_sq = jacobian_penalty(xr, net(xr), n_proj=-1)
    norms = jacobian_norms(net, xr.detach())
    assert float(half_mean_sq.detach()) == pytest.approx(0.5 * float((norms**2).mean()), rel=1e-4)
