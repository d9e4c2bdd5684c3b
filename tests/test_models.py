"""Every model: parameter counts as the studies printed them, the config contract (every YAML in conf/model
builds and runs on its data's shape) and the behaviours the seed studies depend on."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from regnet.models.convnet import ConvNet
from regnet.models.lenet5 import C3_TABLE, LeNet5, c3_mask
from regnet.models.lenet_deep import LeNetDeep
from regnet.models.lenet_dl import LeNetDL
from regnet.models.lenet_drop import LeNetDrop
from regnet.models.lenet_small import LeNetSmall
from tests.conftest import CONF, compose_cfg

MODEL_YAMLS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))

# name → (overrides, parameters in model.parameters()); numbers printed by the seed notebooks / papers
PARAM_COUNTS = {
    "lenet": ([], 61_706),  # seed 000, Hoffman et al. 2019
    "resnet18": ([], 11_227_812),  # seed 001, torchvision ResNet-18 at 100 classes
    "simplenet": ([], 1_677_290),  # seed 004
    "lenet5": ([], 61_750),  # seed 002: 60,850 trainable + 900 masked C3 weights (tested below)
    "convnet": ([], 431_080),  # seed 003
    "lenet_small": ([], 28_938),  # seed 004 LeNet
    "lenet_bn": ([], 29_034),
    "lenet_drop": ([], 28_938),
    "lenet_drop_bn": ([], 29_034),
    "lenet_dl": ([], 83_658),
    "lenet_deep": ([], 107_372),
}
VARIANT_COUNTS = [
    ("convnet", ["model.batchnorm=true"], 431_220),
    ("lenet_dl", ["model.kernel2=3"], 50_890),
]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "name,overrides,expected",
    [(k, o, n) for k, (o, n) in PARAM_COUNTS.items()] + VARIANT_COUNTS,
)
def test_parameter_counts(name, overrides, expected):
    cfg = compose_cfg([f"model={name}", *overrides])
    assert n_params(instantiate(cfg.model)) == expected


@pytest.mark.parametrize("name", MODEL_YAMLS)
def test_every_model_yaml_builds_and_runs_on_its_data(name):
    cfg = compose_cfg([f"model={name}"])
    model = instantiate(cfg.model)
    x = torch.randn(3, cfg.data.in_channels, cfg.data.image_size, cfg.data.image_size)  # (N, C, H, W)
    model.train()
    assert model(x).shape == (3, cfg.data.num_classes)
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (3, cfg.data.num_classes) and torch.isfinite(out).all()


# --- LeNet-5 (seed 002) ---------------------------------------------------------------------------------
def test_lenet5_c3_table_is_lecuns():
    mask = c3_mask()  # (16, 6)
    assert mask.sum() == 60
    per_output = mask.sum(dim=1).tolist()
    assert per_output == [3] * 6 + [4] * 6 + [4] * 3 + [6]
    # C3 maps 0-5 see cyclically contiguous triples, 6-11 quadruples, 12 sees {0, 1, 3, 4}
    assert [mask[o].nonzero().flatten().tolist() for o in (0, 5, 6, 11, 12)] == [
        [0, 1, 2], [0, 1, 5], [0, 1, 2, 3], [0, 1, 2, 5], [0, 1, 3, 4],
    ]  # fmt: skip
    assert all(len(row) == 10 for row in C3_TABLE)


def test_lenet5_trainable_parameters_match_the_paper():
    model = LeNet5()
    assert model.trainable_parameters() == 60_850
    assert n_params(model.c1) == 156 and n_params(model.s2) == 12 and model.c3.connections() == 1_516
    assert n_params(model.s4) == 32 and n_params(model.c5) == 48_120 and n_params(model.f6) == 10_164


def test_lenet5_masked_c3_weights_have_no_effect_no_gradient_and_stay_zero():
    torch.manual_seed(0)
    model = LeNet5()
    off = c3_mask().view(16, 6, 1, 1).expand_as(model.c3.weight) == 0  # (16, 6, 5, 5) unconnected
    assert (model.c3.weight[off] == 0).all()
    x = torch.randn(8, 1, 32, 32)
    y = torch.randint(0, 10, (8,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        assert (model.c3.weight.grad[off] == 0).all()
        assert model.c3.weight.grad[~off].abs().sum() > 0  # the connected kernels do learn
        opt.step()
    assert (model.c3.weight[off] == 0).all()
    # even if something writes into an unconnected kernel, the output does not change
    before = model(x)
    with torch.no_grad():
        model.c3.weight[off] = 5.0
    assert torch.equal(model(x), before)
    with torch.no_grad():
        model.c3.weight[~off] += 0.1
    assert not torch.allclose(model(x), before)


def test_lenet5_subsampling_is_per_map():
    model = LeNet5()
    with torch.no_grad():
        model.s2.coefficient.copy_(torch.arange(6.0))
        model.s2.bias.zero_()
    x = torch.ones(1, 6, 4, 4)
    out = model.s2(x)  # tanh(coefficient_c · 1)
    assert torch.allclose(out[0, :, 0, 0], torch.tanh(torch.arange(6.0)))


def test_lenet5_rejects_unpadded_mnist():
    with pytest.raises(ValueError, match="data.pad=2"):
        LeNet5(image_size=28)


# --- ConvNet (seed 003) ---------------------------------------------------------------------------------
def test_convnet_dropout_one_zeroes_the_last_layers_input_in_training():
    torch.manual_seed(0)
    model = ConvNet(dropout=1.0)
    x = torch.randn(4, 1, 28, 28)
    model.train()
    bias = model.classifier[-1].bias
    assert torch.equal(model(x), bias.expand(4, -1))  # fc2(0) = its bias, for every input
    model.eval()
    assert not torch.allclose(model(x), bias.expand(4, -1))  # dropout is off at evaluation
    with pytest.raises(ValueError, match=r"dropout=1.5.*\[0, 1\]"):
        ConvNet(dropout=1.5)


def test_convnet_options():
    x = torch.randn(4, 1, 28, 28)
    logp = ConvNet(log_softmax=True).eval()(x)
    assert torch.allclose(logp.exp().sum(dim=1), torch.ones(4), atol=1e-5)
    sig = ConvNet(activation="sigmoid")
    assert [type(m) for m in sig.features if isinstance(m, (nn.ReLU, nn.Sigmoid))] == [nn.Sigmoid, nn.Sigmoid]
    assert isinstance(sig.classifier[1], nn.ReLU)  # fc1 keeps ReLU, as the study
    bn = ConvNet(batchnorm=True)
    assert [type(m).__name__ for m in bn.features][:4] == ["Conv2d", "ReLU", "MaxPool2d", "BatchNorm2d"]
    with pytest.raises(ValueError, match="tanh"):
        ConvNet(activation="tanh")
    with pytest.raises(ValueError, match="init='he'"):
        ConvNet(init="he")


def test_convnet_xavier_init_has_glorots_bound():
    torch.manual_seed(0)
    conv1 = ConvNet(init="xavier").features[0]  # fan_in 25, fan_out 500
    xavier_bound = (6 / (25 + 500)) ** 0.5  # 0.107; PyTorch's default would reach 1/√25 = 0.2
    assert conv1.weight.abs().max() <= xavier_bound
    assert conv1.weight.abs().max() > 0.9 * xavier_bound
    assert ConvNet(init="default").features[0].weight.abs().max() > 1.5 * xavier_bound


# --- seed-004 family ------------------------------------------------------------------------------------
def test_small_cnns_are_the_studys_sequentials():
    drop = LeNetDrop()
    assert [type(m).__name__ for m in drop.features[0]] == ["Conv2d", "ReLU", "Dropout2d", "MaxPool2d"]
    assert [type(m).__name__ for m in drop.classifier] == ["Linear", "Dropout"]  # dropout on the logits
    assert drop.classifier[1].p == 0.4 and drop.features[0][2].p == 0.125
    assert not any(isinstance(m, (nn.Dropout, nn.Dropout2d)) for m in LeNetSmall().modules())
    deep = LeNetDeep()
    assert isinstance(deep.features[0], nn.BatchNorm2d) and deep.features[0].num_features == 1
    assert [b[0].kernel_size for b in deep.features[1:5]] == [(5, 5), (5, 5), (3, 3), (3, 3)]
    assert LeNetDL(kernel2=3).features[1][0].padding == (1, 1)
    with pytest.raises(ValueError, match="kernel=4"):
        LeNetDL(kernel2=4)
