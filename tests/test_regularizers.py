"""Every regularizer: one test over every YAML of conf/reg (built through the real config, shown to change
training versus reg=none at the YAML's scale), one over every model (the weight-matrix regularizers touch every
weight layer, LeNet-5's sparse C3 and ResNet's included, and nothing else), the composition rules, and each
regularizer against a direct formula on a small model. Each test fails if a regularizer were a no-op, had the
wrong scale or silently skipped a layer. SVB: tests/test_svb.py; the Jacobian penalty: tests/test_jacobian.py."""

from __future__ import annotations

import copy
import inspect
from functools import lru_cache

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

from regnet.models import MODELS
from regnet.models.lenet import LeNet
from regnet.models.lenet5 import LeNet5, SparseConv2d
from regnet.module import RegNetModule
from regnet.regularizers.base import Regularizer, check_composition, weight_layers, weight_matrices
from regnet.regularizers.confidence_penalty import ConfidencePenalty
from regnet.regularizers.elastic import Elastic
from regnet.regularizers.input_noise import InputNoise
from regnet.regularizers.jacobian import Jacobian
from regnet.regularizers.l1 import L1
from regnet.regularizers.l2 import L2
from regnet.regularizers.label_smoothing import LabelSmoothing
from regnet.regularizers.none import NoRegularizer
from regnet.regularizers.soft_svb import SoftSVB
from regnet.regularizers.svb import SVB, projectable_matrices, svb_project_
from regnet.regularizers.weight_noise import WeightNoise
from regnet.train import train
from tests.conftest import CONF, compose_cfg, tiny

REG_YAMLS = sorted(p.stem for p in (CONF / "reg").glob("*.yaml"))


@pytest.mark.parametrize("reg", REG_YAMLS)
def test_every_regularizer_builds_and_trains(reg, data_root, tmp_path):
    cfg = compose_cfg(
        [f"reg={reg}", f"data.root={data_root}", *tiny("trainer.limit_train_batches=2")], return_hydra_config=True
    )
    (built,) = [instantiate(r) for r in cfg.reg.values()]
    assert isinstance(built, Regularizer) and built.name == reg
    results = train(cfg, tmp_path)
    assert results["status"] == "completed" and results["reg"] == [reg]


@lru_cache(maxsize=1)
def reg_nodes():
    """Every conf/reg YAML, composed through the real config in one go (``reg=[a,b,...]``)."""
    return compose_cfg([f"reg=[{','.join(REG_YAMLS)}]"]).reg


def from_yaml(name: str, **overrides) -> Regularizer:
    return instantiate(reg_nodes()[name], **overrides)


class _Trainer:
    """What SVB's callback reads of a Trainer: the optimizer step count."""

    global_step = 0


def one_step(reg: Regularizer, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """One training step of a copy of ``model`` with ``reg``, as a run makes it (setup, training_step, the optimizer
    with the regularizers' weight decay, their callbacks after step 1): loss, gradients and new weights."""
    model = copy.deepcopy(model)
    reg.setup(model)
    module = RegNetModule(model, num_classes=10, regularizers=[reg])
    optimizer = module.configure_optimizers()
    torch.manual_seed(5)
    loss = module.training_step((x, y), 0)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    optimizer.step()
    trainer = _Trainer()
    for cb in reg.callbacks():
        cb.on_train_start(trainer, module)
        trainer.global_step = 1
        cb.on_train_batch_end(trainer, module, None, (x, y), 0)
    weights = [p.detach().clone() for p in model.parameters()]
    wd = optimizer.param_groups[0]["weight_decay"]
    return {"loss": loss.detach(), "grads": grads, "weights": weights, "weight_decay": wd, "callbacks": reg.callbacks()}


def weight_deltas(reg: WeightNoise, model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """noisy − clean weight of every layer with a ``weight``, as the layer saw it in one noisy forward pass."""
    clean = {name: p.detach().clone() for name, p in model.named_parameters()}
    deltas: dict[str, torch.Tensor] = {}

    def record(name: str):
        return lambda m, _: deltas.__setitem__(name, m.weight.detach() - clean[f"{name}.weight"])

    layers = [(name, m) for name, m in model.named_modules() if isinstance(getattr(m, "weight", None), torch.Tensor)]
    handles = [m.register_forward_pre_hook(record(name)) for name, m in layers]
    reg.forward(model, x)
    for h in handles:
        h.remove()
    return deltas


def singular_values(model: nn.Module) -> list[torch.Tensor]:
    return [torch.linalg.svdvals(w.detach()) for _, _, w in weight_matrices(model)]


def all_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The test's own ground truth of the weight matrices: every parameter with ≥ 2 dimensions."""
    return {name: p for name, p in model.named_parameters() if p.dim() >= 2}


def abs_sum(model: nn.Module) -> torch.Tensor:
    return sum(w.abs().sum() for w in all_weights(model).values())


# --- every conf/reg YAML changes training, at its documented scale ----------------------------------------------
# one check per YAML, name → check(reg, its YAML node, model, x, y, one_step's result, reg=none's loss)
def _check_none(reg, cfg, model, x, y, got, plain):
    assert got["loss"] == plain and got["weight_decay"] == 0 and got["callbacks"] == []


def _check_l1(reg, cfg, model, x, y, got, plain):
    assert reg.lam == cfg.lam and torch.allclose(got["loss"] - plain, cfg.lam * abs_sum(model), rtol=1e-3)


def _check_elastic(reg, cfg, model, x, y, got, plain):
    assert torch.allclose(got["loss"] - plain, cfg.l1 * abs_sum(model), rtol=1e-3)
    assert got["weight_decay"] == cfg.weight_decay > 0


def _check_l2(reg, cfg, model, x, y, got, plain):
    assert got["weight_decay"] == cfg.weight_decay > 0 and got["loss"] == plain


def _check_soft_svb(reg, cfg, model, x, y, got, plain):
    gap = 0.0
    for w in all_weights(model).values():
        w = w.reshape(w.shape[0], -1)
        gram = w @ w.T if w.shape[0] < w.shape[1] else w.T @ w
        gap = gap + (gram - torch.eye(gram.shape[0])).pow(2).sum()
    assert torch.allclose(got["loss"] - plain, cfg.lam * gap, rtol=1e-3)


def _check_jacobian(reg, cfg, model, x, y, got, plain):
    assert got["loss"] > plain and (reg.lam, reg.n_proj) == (cfg.lam, cfg.n_proj)
    exact = from_yaml("jacobian", n_proj=-1)  # the YAML's λ with the exact norm: λ/2 · mean ‖∂z/∂x‖²_F
    jac = torch.func.vmap(torch.func.jacrev(lambda xi: model(xi.unsqueeze(0)).squeeze(0)))(x)  # (N, C, 1, 28, 28)
    want = cfg.lam * 0.5 * jac.pow(2).flatten(1).sum(1).mean()
    xg = x.clone().requires_grad_(True)
    assert torch.allclose(exact.penalty(model, xg, model(xg), y), want, rtol=1e-4)


def _check_confidence_penalty(reg, cfg, model, x, y, got, plain):
    p = model(x).softmax(-1)
    assert torch.allclose(got["loss"] - plain, cfg.beta * (p * p.log()).sum(-1).mean(), rtol=1e-3, atol=1e-7)


def _check_label_smoothing(reg, cfg, model, x, y, got, plain):
    assert torch.allclose(got["loss"], F.cross_entropy(model(x), y, label_smoothing=cfg.eps), atol=1e-6)


def _check_input_noise(reg, cfg, model, x, y, got, plain):
    torch.manual_seed(0)
    noise = reg.perturb_inputs(torch.zeros(20_000))
    assert abs(noise.std().item() - cfg.sigma) < 0.03 * cfg.sigma and got["loss"] != plain


def _check_weight_noise(reg, cfg, model, x, y, got, plain):
    torch.manual_seed(0)
    deltas = torch.cat([d.flatten() for d in weight_deltas(reg, model, x).values() if d.abs().sum() > 0])
    assert deltas.numel() == sum(w.numel() for w in all_weights(model).values())  # every weight, nothing else
    assert abs(deltas.std().item() - cfg.sigma) < 0.03 * cfg.sigma and got["loss"] != plain


def _check_svb(reg, cfg, model, x, y, got, plain):
    (callback,) = got["callbacks"]
    assert (callback.eps, callback.every) == (cfg.eps, cfg.every)
    started = copy.deepcopy(model)
    reg.setup(started)  # the orthogonal init: every singular value 1
    assert all(torch.allclose(s, torch.ones_like(s), atol=1e-5) for s in singular_values(started))
    with torch.no_grad():
        for w in all_weights(started).values():
            w.mul_(3.0)
    module, trainer = RegNetModule(started, num_classes=10), _Trainer()
    callback.on_train_start(trainer, module)
    trainer.global_step = cfg.every - 1  # not yet: the weights are left alone
    callback.on_train_batch_end(trainer, module, None, None, 0)
    assert all(s.min() > 2.9 for s in singular_values(started))
    trainer.global_step = cfg.every  # the every-th optimizer step: projected into [1/(1+ε), 1+ε]
    callback.on_train_batch_end(trainer, module, None, None, 0)
    for s in singular_values(started):
        assert s.max() <= 1 + cfg.eps + 1e-5 and s.min() >= 1 / (1 + cfg.eps) - 1e-5


CHECKS = {name.removeprefix("_check_"): fn for name, fn in dict(globals()).items() if name.startswith("_check_")}


@pytest.mark.parametrize("name", REG_YAMLS)
def test_every_reg_yaml_changes_training_at_its_documented_scale(name):
    """Built from its YAML, each regularizer makes one training step differ from reg=none (loss, gradients or
    weights) by what its formula and the YAML's hyper-parameters say; reg=none changes nothing."""
    cfg = reg_nodes()[name]
    reg = from_yaml(name)
    assert isinstance(reg, Regularizer) and reg.name == name
    torch.manual_seed(0)
    model = LeNet().eval()  # the default model without dropout, so the differences are the regularizer's alone
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])  # an MNIST-shaped batch
    got, base = one_step(reg, model, x, y), one_step(NoRegularizer(), model, x, y)
    pairs = zip(got["grads"] + got["weights"], base["grads"] + base["weights"])
    changed = bool(got["loss"] != base["loss"]) or any(not torch.equal(a, b) for a, b in pairs)
    assert changed == (name != "none"), f"reg={name} changed nothing" if name != "none" else "reg=none changed"
    CHECKS[name](reg, cfg, model, x, y, got, base["loss"])


def test_every_reg_yaml_has_a_check():
    assert sorted(CHECKS) == REG_YAMLS


# --- the weight-matrix regularizers touch every weight layer of every model ---------------------------------------
def _input(cls: type) -> torch.Tensor:
    """A batch of 2 of the shape the model's defaults expect."""
    params = inspect.signature(cls).parameters
    size = params["image_size"].default if "image_size" in params else 32
    return torch.randn(2, params["in_channels"].default, size, size)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_weight_matrix_regularizers_cover_every_weight_layer(name):
    """l1, elastic and soft_svb put a gradient on every ≥ 2-D parameter (and none on C3's unconnected kernels);
    weight_noise perturbs every one; svb bounds every one (projects each, on the models whose SVDs are quick), or
    refuses LeNet-5's sparse C3 in one line."""
    torch.manual_seed(0)
    model = MODELS[name]()
    weights = all_weights(model)
    assert [f"{n}.weight" for n, _ in weight_layers(model)] == list(weights)
    off = {f"{n}.weight": m.mask.expand_as(m.weight) == 0 for n, m in model.named_modules()
           if isinstance(m, SparseConv2d)}  # fmt: skip
    for reg in (from_yaml("l1"), from_yaml("elastic"), from_yaml("soft_svb")):
        grads = torch.autograd.grad(reg.penalty(model, None, None, None), list(weights.values()))
        for wname, g in zip(weights, grads):
            live = g[~off[wname]] if wname in off else g
            assert live.abs().sum() > 0, (reg.name, wname)
            assert wname not in off or (g[off[wname]] == 0).all(), (reg.name, wname)
    deltas = weight_deltas(from_yaml("weight_noise"), model.train(), _input(type(model)))
    assert sorted(n for n, d in deltas.items() if d.abs().sum() > 0) == sorted(n for n, _ in weight_layers(model))
    svb = from_yaml("svb")
    if off:
        with pytest.raises(ValueError, match=r"reg.svb cannot bound the singular values of c3 \(SparseConv2d"):
            svb.setup(model)
        return
    assert [f"{n}.weight" for n, _, _ in projectable_matrices(model)] == list(weights)  # what svb_project_ bounds
    if sum(w.numel() for w in weights.values()) > 200_000:
        return  # ConvNet, SimpleNet, ResNet-18: their SVDs take too long for a unit test; the projection is the same
    with torch.no_grad():
        for w in weights.values():
            w.mul_(3.0)
    svb_project_(model, svb.eps)
    for wname, w in weights.items():
        s = torch.linalg.svdvals(w.detach().reshape(w.shape[0], -1))
        assert s.max() <= 1 + svb.eps + 1e-4 and s.min() >= 1 / (1 + svb.eps) - 1e-4, wname


def test_lenet5_unconnected_c3_kernels_stay_zero_under_the_weight_regularizers():
    """The rule for LeNet-5's sparse C3: l1, elastic, soft_svb and weight_noise see the weight it applies
    (weight · mask), so training with them leaves the 36 unconnected kernels at exactly 0."""
    torch.manual_seed(0)
    model = LeNet5()
    off = model.c3.mask.expand_as(model.c3.weight) == 0
    regs = [from_yaml("soft_svb", lam=1e-2), from_yaml("l1", lam=1e-3), from_yaml("weight_noise", sigma=0.1)]
    module = RegNetModule(model, num_classes=10, regularizers=regs, loss="bce_onehot")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    x, y = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))
    start = model.c3.weight.detach().clone()
    for _ in range(3):
        optimizer.zero_grad()
        module.training_step((x, y), 0).backward()
        optimizer.step()
    assert (model.c3.weight[off] == 0).all() and not torch.equal(model.c3.weight[~off], start[~off])
    assert module.means["train_means"]["soft_svb"].compute() > 0


@pytest.mark.parametrize("reg", [L1(), Elastic(), SoftSVB(), WeightNoise(), SVB()], ids=lambda r: r.name)
def test_weight_matrix_regularizers_refuse_a_layer_they_do_not_know(reg):
    """A parameterised layer outside Linear/Conv/SparseConv2d fails loudly, naming the layer and the regularizer."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.ConvTranspose2d(2, 1, 3))
    x = torch.randn(1, 1, 6, 6)
    with pytest.raises(ValueError, match=rf"reg.{reg.name} does not know the layer '2' \(ConvTranspose2d") as err:
        reg.setup(model)
        reg.forward(model, x)
        reg.penalty(model, x, None, None)
    assert "\n" not in str(err.value)


# --- composition ------------------------------------------------------------------------------------------------
class _Dropconnect(Regularizer):
    """A second regularizer that replaces the forward pass, as a user might add one."""

    name = "dropconnect"

    def forward(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return model(x)


def test_two_forward_replacing_regularizers_are_refused_at_setup():
    model = LeNet()
    for regs in ([WeightNoise(0.01), WeightNoise(0.02)], [L1(), WeightNoise(), _Dropconnect()]):
        with pytest.raises(ValueError, match=r"weight_noise and (weight_noise|dropconnect) each replace the "
                                             r"training forward pass and only one can") as err:  # fmt: skip
            RegNetModule(model, num_classes=10, regularizers=regs)
        assert "\n" not in str(err.value)
    check_composition([WeightNoise(), L1(), InputNoise(), Jacobian()])  # one replacer composes with the rest
    RegNetModule(model, num_classes=10, regularizers=[_Dropconnect(), L2()])


# --- each regularizer against its formula on a small model ------------------------------------------------------
def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 4 * 4, 5), nn.Tanh(), nn.Linear(5, 3)
    )


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


@pytest.mark.parametrize("reg", [L2(5e-4), Elastic(l1=0.2, weight_decay=5e-4)], ids=lambda r: r.name)
def test_weight_decay_shrinks_every_parameter_by_lr_times_wd(reg):
    """One SGD step with zero data gradient shrinks every parameter, convolutions and biases included, by exactly
    lr · wd · w (torch's ``weight_decay``, as the study's optimizer); without a regularizer there is no decay."""
    model = LeNet()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)  # biases start at zero, where decay cannot be seen
    optimizer = RegNetModule(model, num_classes=10, regularizers=[reg]).configure_optimizers()
    lr = optimizer.param_groups[0]["lr"]
    assert optimizer.param_groups[0]["weight_decay"] == 5e-4 and lr > 0
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert any(n.endswith("bias") for n in before) and any(p.dim() == 4 for p in before.values())
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for n, p in model.named_parameters():
        assert torch.allclose(p, before[n] * (1 - lr * 5e-4), rtol=1e-6, atol=1e-12), n
        assert not torch.equal(p, before[n]), n
    plain = RegNetModule(LeNet(), num_classes=10).configure_optimizers()
    assert plain.param_groups[0]["weight_decay"] == 0


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
    want = F.cross_entropy(logits, y, label_smoothing=eps)
    assert torch.allclose(total, want, atol=1e-6)
    # and its gradient: a detached penalty would leave plain cross-entropy's
    params = list(model.parameters())
    got_grads = torch.autograd.grad(total, params, retain_graph=True)
    want_grads = torch.autograd.grad(want, params, retain_graph=True)
    plain_grads = torch.autograd.grad(F.cross_entropy(logits, y), params)
    for g, w, c in zip(got_grads, want_grads, plain_grads, strict=True):
        assert torch.allclose(g, w, atol=1e-6)
    assert not all(torch.allclose(w, c, atol=1e-6) for w, c in zip(want_grads, plain_grads, strict=True))


def test_confidence_penalty_is_negative_entropy(batch):
    model = small_model()
    x, y = batch
    logits = model(x) * 3
    p = logits.softmax(-1)
    entropy = -(p * p.log()).sum(-1).mean()
    got = ConfidencePenalty(beta=0.7).penalty(model, x, logits, y)
    assert torch.allclose(got, -0.7 * entropy)
    # differentiable, with the formula's gradient (a detached penalty would give none)
    params = list(model.parameters())
    got_grads = torch.autograd.grad(got, params, retain_graph=True)
    want_grads = torch.autograd.grad(-0.7 * entropy, params)
    for g, w in zip(got_grads, want_grads, strict=True):
        assert torch.allclose(g, w, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in got_grads)


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
    cfg = compose_cfg(
        ["reg=[l2,soft_svb,label_smoothing]", f"data.root={data_root}", *tiny()], return_hydra_config=True
    )
    results = train(cfg, tmp_path)
    assert results["reg"] == ["l2", "soft_svb", "label_smoothing"]
    assert results["metrics"]["train/soft_svb"] > 0 and results["metrics"]["train/label_smoothing"] != 0
