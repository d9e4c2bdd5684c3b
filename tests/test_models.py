"""Every model: one test over every registered model (``regnet.models.MODELS``), composed through its YAML in
conf/model (registered name, forward and backward on its data's shape, every parameter gets a gradient,
parameter count as documented); the registry against conf/model and the stackability check; the
initialisations, and the behaviours the studies depend on."""

from __future__ import annotations

import ast
import copy
import inspect
from functools import cache

import pytest
import torch
from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf
from torch import nn

import regnet.models.small_cnn
from regnet.build import model_name
from regnet.models import MODELS, register_model, registered_name
from regnet.models import registry as model_registry
from regnet.models.convnet import ConvNet
from regnet.models.init import glorot_init_, orthogonal_init_
from regnet.models.lenet import LeNet
from regnet.models.lenet5 import C3_TABLE, LeNet5, c3_mask
from regnet.models.small_cnn import FAMILY, LeNetDeep, LeNetDL, LeNetDrop, LeNetSmall
from tests.conftest import CONF, REPO, compose_cfg

MODEL_YAMLS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
REGISTERED = sorted(MODELS)  # what the tests below are parametrised over: the registry
CONFIGS_DOC = REPO / "docs" / "configs.md"  # its table of what's in the box

# name → trainable parameters on the paired dataset, as the studies / papers printed them (docs/configs.md's table)
PARAM_COUNTS = {
    "lenet": 61_706,  # hoffman2019_mnist, Hoffman et al. 2019
    "resnet18": 11_227_812,  # cifar100_resnet18, torchvision ResNet-18 at 100 classes
    "simplenet": 1_677_290,  # mnist_small_cnns
    "lenet5": 60_850,  # lenet5_lecun: the paper's count; parameters() also holds 900 masked C3 weights (below)
    "convnet": 431_080,  # convnet_ablation
    "lenet_small": 28_938,  # mnist_small_cnns, the study's LeNet
    "lenet_bn": 29_034,
    "lenet_drop": 28_938,
    "lenet_drop_bn": 29_034,
    "lenet_dl": 83_658,
    "lenet_deep": 107_372,
}
VARIANT_COUNTS = [
    ("convnet", ["model.batchnorm=true"], 431_220),
    ("lenet_dl", ["model.kernel2=3"], 50_890),
]


@cache
def composed(*overrides: str):
    """The composed config (read-only; composed once per set of overrides, composing is the slow part)."""
    cfg = compose_cfg(list(overrides))
    OmegaConf.set_readonly(cfg, True)
    return cfg


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def trainable(model: nn.Module) -> int:
    """Parameters that influence the output (LeNet-5 leaves out its masked C3 weights)."""
    return model.trainable_parameters() if hasattr(model, "trainable_parameters") else n_params(model)


@pytest.mark.parametrize("name", REGISTERED)
def test_every_model_yaml_is_registered_counts_as_documented_and_trains_on_its_data(name):
    cfg = composed(f"model={name}")
    assert get_object(cfg.model._target_) is MODELS[name] and model_name(cfg) == name
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    # the documented count: the test's table, docs/configs.md's, the YAML's header, the family file's table
    assert trainable(model) == PARAM_COUNTS[name]
    assert f"{PARAM_COUNTS[name]:,}" in (CONF / "model" / f"{name}.yaml").read_text()
    (row,) = [line for line in CONFIGS_DOC.read_text().splitlines() if line.startswith(f"| model | `{name}` |")]
    assert f"{PARAM_COUNTS[name]:,}" in row
    if MODELS[name] in FAMILY:
        assert f"{PARAM_COUNTS[name]:,}" in regnet.models.small_cnn.__doc__
    # forward and backward on a tiny batch of the paired dataset's shape; every parameter learns
    x = torch.randn(2, cfg.data.in_channels, cfg.data.image_size, cfg.data.image_size)  # (N, C, H, W)
    y = torch.tensor([0, 1])
    model.train()
    logits = model(x)
    assert logits.shape == (2, cfg.data.num_classes)
    nn.functional.cross_entropy(logits, y).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f"{name}: no gradient for {no_grad}"
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, cfg.data.num_classes) and torch.isfinite(out).all()


DROPOUT_MODELS = [n for n in REGISTERED if "dropout" in inspect.signature(MODELS[n]).parameters]


@pytest.mark.parametrize("name", DROPOUT_MODELS)
def test_dropout_reaches_every_dropout_layer_and_acts_only_in_training(name):
    """``model.dropout=p`` (and ``model.dropout2d``) sets p on every Dropout (Dropout2d) layer the model has,
    none is left at another rate; it makes the training forward pass random and leaves evaluation deterministic."""
    two_d = "dropout2d" in inspect.signature(MODELS[name]).parameters
    cfg = composed(f"model={name}", "model.dropout=0.3", *(["model.dropout2d=0.2"] if two_d else []))
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    rates: dict[type, set[float]] = {}
    for m in model.modules():
        if isinstance(m, nn.Dropout | nn.Dropout2d):
            rates.setdefault(type(m), set()).add(m.p)
    assert rates.get(nn.Dropout) == {0.3}, rates
    assert rates.get(nn.Dropout2d, {0.2}) == {0.2}, rates
    x = torch.randn(2, cfg.data.in_channels, cfg.data.image_size, cfg.data.image_size)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        assert not torch.allclose(model(x), model(x))
    off = instantiate(composed(f"model={name}", "model.dropout=0", *(["model.dropout2d=0"] if two_d else [])).model)
    assert not any(isinstance(m, nn.Dropout | nn.Dropout2d) and m.p > 0 for m in off.modules())


@pytest.mark.parametrize("name,overrides,expected", VARIANT_COUNTS)
def test_documented_variant_parameter_counts(name, overrides, expected):
    assert n_params(instantiate(composed(f"model={name}", *overrides).model)) == expected


def test_registry_is_conf_model():
    """Nothing registered without a YAML, no YAML without a registered model, each YAML targets its registered
    class; the family names itself."""
    assert REGISTERED == MODEL_YAMLS == sorted(PARAM_COUNTS)
    for name in MODEL_YAMLS:  # the file as written (no composition): conf/model/<name>.yaml → MODELS[name]
        assert get_object(OmegaConf.load(CONF / "model" / f"{name}.yaml").model._target_) is MODELS[name], name
    assert all(MODELS[cls.name] is cls and registered_name(cls) == cls.name for cls in FAMILY)
    assert registered_name(nn.Identity) is None
    # a model outside the registry is named by its full target, never by a piece of it
    assert model_name(OmegaConf.create({"model": {"_target_": "torch.nn.Identity"}})) == "torch.nn.Identity"


def test_the_stackability_check_reads_the_registry(monkeypatch):
    """A model stacks once it is registered (its forward read), unless its registered refusal says otherwise;
    an unregistered container is refused, a name registered twice is an error."""
    from regnet.stacked.layers import stack_refusal

    for attr in ("MODELS", "_LAYOUT_SAFE", "_REFUSALS"):  # this test's registrations leave with it
        monkeypatch.setattr(model_registry, attr, copy.copy(getattr(model_registry, attr)))

    class Tiny(nn.Module):
        def __init__(self, scale: bool = False):
            super().__init__()
            self.fc, self.scale = nn.Linear(4, 2), scale

        def forward(self, x):
            return self.fc(x)

    assert stack_refusal(Tiny()) == "the model (Tiny) has no stacked version"
    register_model("tiny", refusal=lambda m: "tiny with scale=true cannot stack" if m.scale else None)(Tiny)
    assert model_registry.MODELS["tiny"] is Tiny and registered_name(Tiny) == "tiny"
    assert stack_refusal(Tiny()) is None
    assert stack_refusal(Tiny(scale=True)) == "tiny with scale=true cannot stack"
    assert "tiny" not in MODELS  # the real registry is untouched
    with pytest.raises(ValueError, match="'tiny' is registered twice"):
        register_model("tiny")(nn.Linear)
    # every registered model's own forward is in the check's list, the convnet's refusal is its registered one
    assert {cls.forward for cls in MODELS.values()} <= model_registry.layout_safe_forwards()
    assert stack_refusal(ConvNet(log_softmax=True)).startswith("convnet with log_softmax=true")
    assert stack_refusal(ConvNet()) is None


def test_models_import_nothing_above_them():
    """Layers point down: models never import regularizers, training, analysis or the CLI."""
    above = ("regnet.regularizers", "regnet.module", "regnet.train", "regnet.build", "regnet.analysis",
             "regnet.callbacks", "regnet.analyze", "regnet.jobs", "regnet.results")  # fmt: skip
    for path in sorted((REPO / "regnet" / "models").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad = [n for n in names if n.startswith(above)]
            assert not bad, f"{path.name} imports {bad}"


# --- initialisations (regnet/models/init.py) ----------------------------------------------------------------
def test_glorot_init_has_glorots_bound_and_zero_biases_on_request():
    torch.manual_seed(0)
    model = LeNet(init="default")
    glorot_init_(model, zero_bias=True)
    conv1 = model.features[0]  # fan_in 25, fan_out 150
    bound = (6 / (25 + 150)) ** 0.5
    assert bound * 0.9 < conv1.weight.abs().max() <= bound
    assert all((m.bias == 0).all() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert LeNet(init="glorot").features[0].bias.abs().sum() == 0  # the study's glorot zeroes biases
    kept = ConvNet(init="xavier").features[0].bias  # the convnet_ablation study's xavier keeps PyTorch's
    assert kept.abs().sum() > 0


def test_orthogonal_init_makes_every_weight_matrix_orthogonal():
    torch.manual_seed(0)
    model = LeNet(init="default")
    orthogonal_init_(model)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            s = torch.linalg.svdvals(m.weight.detach().reshape(m.weight.shape[0], -1))  # out × in·k·k
            assert torch.allclose(s, torch.ones_like(s), atol=1e-5) and (m.bias == 0).all()
    torch.manual_seed(1)
    a = LeNet(init="orthogonal")
    torch.manual_seed(1)
    b = LeNet(init="default")
    orthogonal_init_(b)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))  # model.init uses the one init


# --- LeNet-5 (lenet5_lecun) ---------------------------------------------------------------------------------
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
    assert model.trainable_parameters() == 60_850 and n_params(model) == 61_750  # + 900 masked C3 weights
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


# --- ConvNet (convnet_ablation) -----------------------------------------------------------------------------
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


# --- the mnist_small_cnns family (regnet/models/small_cnn.py) -----------------------------------------------
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


def test_small_cnn_family_is_one_class_with_a_row_each():
    assert all(issubclass(cls, regnet.models.small_cnn.SmallCNN) for cls in FAMILY)
    assert [cls.name for cls in FAMILY] == ["lenet_small", "lenet_bn", "lenet_drop", "lenet_drop_bn", "lenet_dl",
                                            "lenet_deep"]  # fmt: skip
    # the YAML's dropout values are the row's defaults; a run may change them
    for cls in FAMILY:
        node = composed(f"model={cls.name}").model
        assert (node.dropout2d, node.dropout) == (cls.arch.dropout2d, cls.arch.dropout)
    assert not any(isinstance(m, nn.Dropout) for m in LeNetDrop(dropout=0.0).modules())
    assert "kernel2" in inspect.signature(LeNetDL).parameters
    with pytest.raises(ValueError, match="lenet_deep does not fit 8×8"):
        LeNetDeep(image_size=8)
