"""Analysis runs in IEEE float32 whatever the global TF32 settings (GPU labels must not move at near-ties), and on
a GPU by default when there is one."""

import pytest
import torch
from torch import nn

from regnet.analysis import attack_accuracy, decision_plane, default_device, full_fp32, jacobian_norms


def _precision() -> tuple[str, str]:
    return torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision


class Spy(nn.Module):
    """A linear classifier that records the float32 precision settings its forward pass runs under."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.seen: set[tuple[str, str]] = set()

    def forward(self, x):
        self.seen.add(_precision())
        return self.linear(x.flatten(1))


@pytest.fixture
def tf32_everywhere():
    saved = _precision()
    torch.backends.cudnn.conv.fp32_precision = torch.backends.cuda.matmul.fp32_precision = "tf32"
    yield
    torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = saved


def test_full_fp32_switches_tf32_off_and_restores_it_even_after_an_error(tf32_everywhere):
    with full_fp32():
        assert _precision() == ("ieee", "ieee")
    assert _precision() == ("tf32", "tf32")
    with pytest.raises(KeyError), full_fp32():
        raise KeyError("boom")
    assert _precision() == ("tf32", "tf32")


def test_planes_attacks_and_jacobians_run_their_model_in_ieee_fp32(tf32_everywhere):
    model = Spy().eval()
    x0, v1, v2 = torch.zeros(1, 2, 2), torch.eye(4)[0].view(1, 2, 2), torch.eye(4)[1].view(1, 2, 2)
    decision_plane(model, x0, v1, v2, zoom=0.5, resolution=4, fast=False)
    x, y = torch.rand(6, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    attack_accuracy(model, x, y, "fgsm", [0.1])
    jacobian_norms(model, x)
    assert model.seen == {("ieee", "ieee")}
    assert _precision() == ("tf32", "tf32")


def test_default_device_is_a_gpu_when_there_is_one():
    assert default_device() == ("cuda" if torch.cuda.is_available() else "cpu")
