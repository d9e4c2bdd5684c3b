"""The fast plane evaluation (regnet/analysis/plane_net.py) gives the model's own logits and labels."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from regnet.analysis.boundaries import decision_plane, orthonormal_directions
from regnet.analysis.plane_net import (
    ChainModel,
    _max_pool_channels_last,
    flatten_channels_last,
    layer_chain,
    pool_first,
    tanh_as_sigmoid,
)
from regnet.models.lenet import LeNet
from tests.conftest import CONF, compose_cfg

MODEL_YAMLS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
CHAINS = {"lenet", "lenet_small", "lenet_bn", "lenet_drop", "lenet_drop_bn", "lenet_dl", "simplenet", "convnet"}
# lenet_deep starts with an input BatchNorm: evaluated point by point (after the first-layer fold)


def _model(name: str, *overrides: str) -> tuple[nn.Module, tuple[int, ...]]:
    cfg = compose_cfg([f"model={name}", *overrides])
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    for m in model.modules():  # non-trivial batch-norm statistics
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval(), (cfg.data.in_channels, cfg.data.image_size, cfg.data.image_size)


@pytest.mark.parametrize("name", MODEL_YAMLS)
def test_plane_logits_equal_the_model_and_labels_equal_plain_evaluation(name):
    if name == "resnet18":
        model, shape = _model(name, "model.stem=cifar", "data=cifar10")
    else:
        model, shape = _model(name)
    chain = ChainModel.parse(model)
    assert (chain is not None) == (name in CHAINS), name
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(shape, generator=g)
    v1, v2 = orthonormal_directions(shape, g)
    if chain is not None:
        a, b = torch.randn(64, generator=g) * 20, torch.randn(64, generator=g) * 20
        with torch.inference_mode():
            expected = model(x0 + a.view(-1, 1, 1, 1) * v1 + b.view(-1, 1, 1, 1) * v2)
            net = chain.plane(x0, v1, v2)
            got = net.logits(a, b)
            net.cpu_kernels = False  # the layers as a GPU runs them
            generic = net.logits(a, b)
        for logits in (got, generic):
            torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    res = 12 if name in ("resnet18", "simplenet") else 32
    fast = decision_plane(model, x0, v1, v2, 0.05, res, batch_size=50)
    plain = decision_plane(model, x0, v1, v2, 0.05, res, fast=False)
    assert torch.equal(fast, plain)


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
def test_lenet_fast_plane_on_every_zoom_is_the_plain_label_image(activation):
    torch.manual_seed(0)
    model = LeNet(activation=activation).eval()
    with torch.no_grad():  # larger weights: more boundaries in view
        for p in model.parameters():
            p.mul_(3)
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(1, 28, 28, generator=g)
    v1, v2 = orthonormal_directions((1, 28, 28), g)
    a, b = torch.randn(32, generator=g) * 300, torch.randn(32, generator=g) * 300
    with torch.inference_mode():
        expected = model(x0 + a.view(-1, 1, 1, 1) * v1 + b.view(-1, 1, 1, 1) * v2)
        got = ChainModel.parse(model).plane(x0, v1, v2).logits(a, b)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    labels = set()
    for zoom in (0.025, 0.01, 0.001):
        fast = decision_plane(model, x0, v1, v2, zoom, 40, batch_size=333)  # ragged last batch
        assert torch.equal(fast, decision_plane(model, x0, v1, v2, zoom, 40, fast=False))
        labels |= set(fast.unique().tolist())
    if activation != "sigmoid":  # a random sigmoid LeNet is constant on these planes
        assert len(labels) > 1  # the planes cross boundaries: the test can tell label images apart


def test_activation_and_max_pool_commute_only_for_monotone_activations():
    layers = [nn.Conv2d(1, 2, 3), nn.Tanh(), nn.MaxPool2d(2), nn.GELU(), nn.MaxPool2d(2)]
    swapped = pool_first(layers)
    assert [type(m) for m in swapped] == [nn.Conv2d, nn.MaxPool2d, nn.Tanh, nn.GELU, nn.MaxPool2d]


def test_models_that_are_not_chains_fall_back():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)
            self.fc = nn.Linear(16, 3)

        def forward(self, x):
            return self.fc((x + self.conv(x)).flatten(1))

    model = Residual().eval()
    assert layer_chain(model) is None and ChainModel.parse(model) is None
    assert ChainModel.parse(LeNet().train()) is None  # dropout active: evaluated as the model runs
    x0 = torch.randn(1, 4, 4)
    v1, v2 = orthonormal_directions((1, 4, 4))
    assert decision_plane(model, x0, v1, v2, 0.5, 8).shape == (8, 8)


def _run(layers, x):
    for layer in layers:
        x = layer(x)
    return x


def test_tanh_becomes_sigmoid_only_between_affine_layers_and_the_chain_computes_the_same():
    torch.manual_seed(0)
    # the chain after a first layer whose output x is (3, 8, 8)
    layers = [nn.Tanh(), nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.Tanh(), nn.Flatten(), nn.Linear(36, 8, bias=False),
              nn.Tanh(), nn.Dropout(0.5), nn.Linear(8, 5)]  # fmt: skip
    layers = [m.eval() for m in layers]
    scale, folded = tanh_as_sigmoid(layers)
    assert scale == 2 and [type(m) for m in folded].count(nn.Sigmoid) == 3 and nn.Tanh not in map(type, folded)
    assert layers[1].weight is not folded[1].weight  # the model's own layers are untouched
    x = torch.randn(16, 3, 8, 8) * 3
    with torch.no_grad():
        torch.testing.assert_close(_run(folded, scale * x), _run(layers, x), rtol=1e-5, atol=1e-5)
    padded = [nn.Tanh(), nn.Conv2d(3, 4, 3, padding=1)]  # zero padding is tanh's 0, i.e. σ = 1/2: not folded
    assert tanh_as_sigmoid(padded) == (1.0, padded)
    last = [nn.Linear(4, 4), nn.Tanh()]  # nothing after the tanh to absorb 2s − 1
    assert tanh_as_sigmoid(last) == (1.0, last)


@pytest.mark.parametrize(("k", "size"), [(2, 10), (2, 7), (3, 9), (1, 4)])
def test_channels_last_max_pool_is_max_pool2d(k, size):
    x = torch.randn(5, 6, size, size + 1).contiguous(memory_format=torch.channels_last)
    assert torch.equal(_max_pool_channels_last(x, k), nn.functional.max_pool2d(x, k))


def test_channels_last_flatten_feeds_the_same_numbers_to_the_linear():
    torch.manual_seed(0)
    layers = [nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Dropout(), nn.Linear(3 * 4 * 5, 7)]
    layers = [m.eval() for m in layers]
    x = torch.randn(4, 2, 6, 7).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        new = flatten_channels_last(layers, (2, 6, 7), x.device)
        assert type(new[1]).__name__ == "FlattenHWC" and new[3] is not layers[3]
        torch.testing.assert_close(_run(new, x), _run(layers, x))


def test_grid_logits_are_the_pointwise_logits():
    torch.manual_seed(0)
    model = LeNet().eval()
    x0, v1, v2 = torch.randn(3, 1, 28, 28)
    net = ChainModel.parse(model).plane(x0, v1, v2)
    a, b = torch.linspace(-30, 30, 3), torch.linspace(-20, 20, 5)
    aa, bb = torch.meshgrid(a, b, indexing="ij")
    torch.testing.assert_close(net.logits(a, b, grid=True), net.logits(aa.reshape(-1), bb.reshape(-1)))
