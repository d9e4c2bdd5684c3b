"""The Jacobian penalty against the exact ½‖∂z/∂x‖²_F from torch.func.jacrev (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from regnet.regularizers import jacobian_penalty
from regnet.regularizers.jacobian import Jacobian


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5), nn.Tanh(), nn.Linear(5, 4)
    ).double()


def exact_half_frobenius(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """½ · mean_n ‖J_n‖²_F with J_n = ∂f(x_n)/∂x_n from jacrev, per sample (differentiable)."""
    jac = torch.func.vmap(torch.func.jacrev(lambda xi: model(xi.unsqueeze(0)).squeeze(0)))(x)  # (N, C, 1, 6, 6)
    return 0.5 * jac.pow(2).flatten(1).sum(1).mean()


@pytest.fixture
def batch():
    torch.manual_seed(1)
    return torch.randn(8, 1, 6, 6, dtype=torch.float64)


def test_exact_mode_matches_jacrev(batch):
    model = small_model()
    x = batch.clone().requires_grad_(True)
    got = jacobian_penalty(x, model(x), n_proj=-1)
    want = exact_half_frobenius(model, batch)
    assert torch.allclose(got, want, rtol=1e-6, atol=0)
    assert got > 0


@pytest.mark.parametrize("n_proj", [1, 3])
def test_random_projection_is_unbiased(batch, n_proj):
    """Hoffman et al. 2019, Eq. 5: C/n_proj · Σ_k ‖v_kᵀJ‖², so the estimate is unbiased for every n_proj (a scale
    of C instead of C/n_proj, or of C/n_proj² fails at n_proj = 3)."""
    model = small_model()
    want = exact_half_frobenius(model, batch).item()
    torch.manual_seed(2)
    # the estimator draws a projection per sample and averages over the batch: 2,000 copies of the batch in one
    # call are 2,000 independent draws of the batch's estimate, averaged
    x = batch.repeat(2000, 1, 1, 1).requires_grad_(True)
    mean = jacobian_penalty(x, model(x), n_proj=n_proj).item()
    assert abs(mean - want) / want < 0.03
    x = batch.clone().requires_grad_(True)
    one = [jacobian_penalty(x, model(x), n_proj=n_proj).item() for _ in range(3)]
    assert len(set(one)) == 3  # a new projection at every call, so the copies above are independent draws


def test_gradient_wrt_weights_equals_exact_formula(batch):
    model = small_model()
    x = batch.clone().requires_grad_(True)
    params = list(model.parameters())
    got = torch.autograd.grad(jacobian_penalty(x, model(x), n_proj=-1), params, allow_unused=True)
    want = torch.autograd.grad(exact_half_frobenius(model, batch), params, allow_unused=True)
    got = [torch.zeros_like(p) if g is None else g for p, g in zip(params, got)]  # the last bias: no effect on J
    want = [torch.zeros_like(p) if g is None else g for p, g in zip(params, want)]
    assert sum(g.abs().sum() > 0 for g in got) >= 5  # not detached: the reference study's penalty trained nothing
    for g, w in zip(got, want):
        assert torch.allclose(g, w, rtol=1e-6, atol=1e-12)


def test_regularizer_scales_by_lambda(batch):
    model = small_model()
    x = batch.clone().requires_grad_(True)
    logits = model(x)
    reg = Jacobian(lam=0.25, n_proj=-1)
    assert torch.allclose(reg.penalty(model, x, logits, None), 0.25 * exact_half_frobenius(model, batch))


@pytest.mark.parametrize("n_proj", [0, -2])
def test_bad_n_proj(n_proj):
    with pytest.raises(ValueError, match="n_proj"):
        Jacobian(n_proj=n_proj)


def test_negative_lambda():
    with pytest.raises(ValueError, match="lam"):
        Jacobian(lam=-0.1)


def test_training_step_loss_carries_the_penalty_gradient_at_its_scale(batch):
    """The module's training loss (the one Lightning backpropagates) = cross-entropy + λ · exact ½‖J‖²_F, gradient
    included: the epoch means detach their copy of the penalty, never the penalty in the loss."""
    from regnet.module import RegNetModule

    model, lam = small_model(), 0.3
    module = RegNetModule(model, num_classes=4, regularizers=[Jacobian(lam=lam, n_proj=-1)]).double()
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    loss = module.training_step((batch, y), 0)
    got = torch.autograd.grad(loss, list(model.parameters()))
    want_loss = nn.functional.cross_entropy(model(batch), y) + lam * exact_half_frobenius(model, batch)
    want = torch.autograd.grad(want_loss, list(model.parameters()))
    assert torch.allclose(loss, want_loss, rtol=1e-9)
    for g, w in zip(got, want):
        assert torch.allclose(g, w, rtol=1e-6, atol=1e-12)
    data_only = torch.autograd.grad(nn.functional.cross_entropy(model(batch), y), list(model.parameters()))
    assert any(not torch.allclose(g, d, rtol=1e-3) for g, d in zip(got, data_only))  # the penalty is not a no-op
    logged = module.means["train_means"]["jacobian"].compute()  # what train/jacobian reports
    assert float(logged) == pytest.approx(float(lam * exact_half_frobenius(model, batch)))
