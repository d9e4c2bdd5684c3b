"""SVB (Jia et al. 2017, Algorithm 1) keeps singular values in [1/(1+ε), 1+ε] when its callback fires and leaves
weights alone otherwise; it refuses, in one line, a sparse layer it cannot bound (LeNet-5's C3)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from regnet.build import build
from regnet.errors import Diverged
from regnet.models.lenet import LeNet
from regnet.models.lenet5 import LeNet5
from regnet.module import RegNetModule
from regnet.regularizers.base import weight_matrices
from regnet.regularizers.svb import SVB, SVBCallback, robust_svd, svb_project_, svd_gesvd
from tests.conftest import compose_cfg


def singular_values(model: nn.Module) -> list[torch.Tensor]:
    return [torch.linalg.svdvals(w.detach()) for _, _, w in weight_matrices(model)]


def test_svb_project_bounds_every_layer():
    torch.manual_seed(0)
    model = LeNet()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # push singular values well outside the band
    eps = 0.05
    assert any(s.max() > 1 + eps for s in singular_values(model))
    svb_project_(model, eps)
    for s in singular_values(model):
        assert s.max() <= 1 + eps + 1e-5 and s.min() >= 1 / (1 + eps) - 1e-5


def test_svb_clips_to_exactly_the_band_and_keeps_what_is_inside():
    """Algorithm 1's projection: singular values below 1/(1+ε) rise to it, above 1+ε fall to it, inside stay;
    the singular vectors are kept. A band of the wrong width or a projection to 1 fails here."""
    torch.manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(4, 4))
    v, _ = torch.linalg.qr(torch.randn(3, 3))
    s = torch.tensor([3.0, 1.02, 0.5])
    layer = nn.Linear(3, 4, bias=False)
    with torch.no_grad():
        layer.weight.copy_(u[:, :3] @ torch.diag(s) @ v.T)
    eps = 0.05
    svb_project_(layer, eps)
    want = torch.tensor([1 + eps, 1.02, 1 / (1 + eps)])
    assert torch.allclose(torch.linalg.svdvals(layer.weight.detach()), want, atol=1e-5)
    assert torch.allclose(layer.weight.detach(), u[:, :3] @ torch.diag(want) @ v.T, atol=1e-5)


class _FakeTrainer:
    global_step = 0


def _svb_setup(every: int) -> tuple[LeNet, RegNetModule, SVBCallback, _FakeTrainer]:
    """A LeNet in a RegNetModule with an SVB callback started by a (step-counting) trainer stand-in."""
    model = LeNet()
    module = RegNetModule(model, num_classes=10)
    callback, trainer = SVBCallback(eps=0.05, every=every), _FakeTrainer()
    callback.on_train_start(trainer, module)
    return model, module, callback, trainer


def test_svb_callback_fires_only_every_n_steps():
    torch.manual_seed(0)
    model, module, callback, trainer = _svb_setup(every=3)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    before = [p.detach().clone() for p in model.parameters()]
    for step in (1, 2):
        trainer.global_step = step
        callback.on_train_batch_end(trainer, module, None, None, 0)
        assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    trainer.global_step = 3
    callback.on_train_batch_end(trainer, module, None, None, 0)
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    for s in singular_values(model):
        assert s.max() <= 1.05 + 1e-5 and s.min() >= 1 / 1.05 - 1e-5
    # a batch without an optimizer step (gradient accumulation) must not project again
    snapshot = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        model.classifier[0].weight.mul_(2.0)
    callback.on_train_batch_end(trainer, module, None, None, 1)
    assert not torch.equal(snapshot[4], model.classifier[0].weight)


def test_svb_setup_is_orthogonal_init():
    model = LeNet()
    SVB().setup(model)
    for s in singular_values(model):
        assert torch.allclose(s, torch.ones_like(s), atol=1e-5)


def test_svd_fallback_and_repeated_singular_values():
    torch.manual_seed(0)
    w = torch.randn(40, 90)
    u, s, vh = svd_gesvd(w)  # the last-resort driver: a true SVD of w
    assert u.dtype == w.dtype and s.shape == (40,)
    torch.testing.assert_close((u * s) @ vh, w, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s, torch.linalg.svdvals(w), rtol=1e-5, atol=1e-5)
    q = torch.nn.init.orthogonal_(torch.empty(64, 576))  # all 64 singular values 1, as SVB starts from
    u, s, vh = robust_svd(q + 1e-7 * torch.randn(64, 576))
    torch.testing.assert_close(s, torch.ones(64), rtol=1e-4, atol=1e-4)


def test_svb_on_non_finite_weights_reports_divergence():
    model, module, callback, trainer = _svb_setup(every=1)
    with torch.no_grad():
        model.classifier[0].weight[0, 0] = float("nan")
    trainer.global_step = 1
    with pytest.raises(Diverged, match="step 1"):
        callback.on_train_batch_end(trainer, module, None, None, 0)
    with pytest.raises(FloatingPointError, match="classifier.0"):
        svb_project_(model, 0.05)


def test_svb_refuses_lenet5s_sparse_c3_in_one_line_before_touching_the_model():
    """Clipping the singular values of C3's masked weight would connect its 36 unconnected kernels: refused."""
    torch.manual_seed(0)
    model = LeNet5()
    before = [p.detach().clone() for p in model.parameters()]
    for refuse in (lambda: SVB().setup(model), lambda: svb_project_(model, 0.05)):
        with pytest.raises(ValueError, match=r"reg.svb cannot bound the singular values of c3 .*reg=soft_svb") as err:
            refuse()
        assert "\n" not in str(err.value)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # nothing half-done
    with pytest.raises(ValueError, match="reg.svb cannot bound the singular values of c3"):  # the config path: at build
        build(compose_cfg(["model=lenet5", "reg=svb"]))
