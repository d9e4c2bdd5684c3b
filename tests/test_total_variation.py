"""Total variation and decision planes on images with known answers."""

import math

import pytest
import torch
from torch import nn

from regnet.analysis import (
    PlaneSettings,
    boundary_length,
    boundary_records,
    decision_plane,
    distance_to_boundary,
    orthonormal_directions,
    total_variation,
)
from regnet.analysis.boundaries import grid_axis


def half_plane(h=8, w=10, left=0, right=1):
    img = torch.full((h, w), right, dtype=torch.long)
    img[:, : w // 2] = left
    return img


def checkerboard(n=6, a=0, b=1):
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    return torch.where((i + j) % 2 == 0, a, b)


def test_half_plane():
    img = half_plane()  # vertical boundary: 8 changes along columns, one per row
    assert total_variation(img, "anisotropic", "boundary") == 8
    assert total_variation(img, "isotropic", "boundary") == 7  # over the (H-1)×(W-1) grid
    five = half_plane(left=0, right=5)
    assert total_variation(five, "anisotropic", "labels") == 40  # 5 × 8: class indices count
    assert total_variation(five, "anisotropic", "boundary") == 8
    assert total_variation(img.T, "anisotropic", "boundary") == 8  # horizontal boundary


def test_checkerboard():
    n = 6
    assert total_variation(checkerboard(n), "anisotropic", "boundary") == 2 * n * (n - 1)
    assert total_variation(checkerboard(n), "isotropic", "boundary") == pytest.approx(math.sqrt(2) * (n - 1) ** 2)
    assert total_variation(checkerboard(n, 0, 3), "isotropic", "labels") == pytest.approx(
        3 * math.sqrt(2) * (n - 1) ** 2
    )
    assert total_variation(torch.zeros(5, 5, dtype=torch.long)) == 0


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64])
def test_label_differences_do_not_wrap_around_in_small_integer_types(dtype):
    """uint8 arithmetic wraps (0 − 9 = 247): the differences are taken in int64, whatever the label dtype."""
    img = torch.tensor([[0, 9], [9, 0]], dtype=dtype)
    assert total_variation(img, "anisotropic", "labels") == 36
    assert total_variation(img, "isotropic", "labels") == pytest.approx(9 * math.sqrt(2))
    assert total_variation(img, "anisotropic", "boundary") == 4
    assert total_variation(torch.tensor([[True, False]]), "anisotropic", "labels") == 1  # bool: no subtraction error


def test_boundary_mode_is_invariant_to_label_permutation():
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 10, (20, 20), generator=g)
    perm = torch.randperm(10, generator=g)
    for kind in ("isotropic", "anisotropic"):
        assert total_variation(perm[img], kind, "boundary") == total_variation(img, kind, "boundary")
    assert total_variation(perm[img], "anisotropic", "labels") != total_variation(img, "anisotropic", "labels")


def test_boundary_length_is_resolution_independent():
    assert boundary_length(half_plane(50, 50)) == pytest.approx(boundary_length(half_plane(200, 200)), rel=0.03)


def test_bad_label_images():
    with pytest.raises(ValueError, match="2-D"):
        total_variation(torch.zeros(2, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        total_variation(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="kind="):
        total_variation(torch.zeros(3, 3, dtype=torch.long), kind="l1")


class Threshold(nn.Module):
    """Class 0 where the projection on ``v`` is above ``t``, else class 1."""

    def __init__(self, v, t=0.0):
        super().__init__()
        self.v, self.t = v, t
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        s = (x * self.v).flatten(1).sum(1) - self.t
        return torch.stack([s, torch.zeros_like(s)], 1)


def test_decision_plane_layout_and_distance():
    v1, v2 = orthonormal_directions((1, 4, 4), torch.Generator().manual_seed(1))
    assert (v1 * v2).sum().abs() < 1e-6 and v1.norm() == pytest.approx(1) and v2.norm() == pytest.approx(1)
    x0 = torch.zeros(1, 4, 4)
    zoom, res = 0.5, 11  # a, b in [-2, 2]
    labels = decision_plane(Threshold(v1, t=0.9), x0, v1, v2, zoom, res)
    a = grid_axis(zoom, res)
    assert labels.shape == (res, res) and labels.dtype == torch.long
    expected = torch.where(a > 0.9, 0, 1)[:, None].expand(res, res)  # rows follow a (v1), columns b (v2)
    assert torch.equal(labels, expected)
    assert distance_to_boundary(labels, 1, zoom) == pytest.approx(1.2)  # first grid value of a above 0.9
    cols = decision_plane(Threshold(v2, t=0.9), x0, v1, v2, zoom, res, batch_size=7)
    assert torch.equal(cols, expected.T)
    assert distance_to_boundary(torch.ones(res, res, dtype=torch.long), 1, zoom) == math.inf


@pytest.mark.parametrize("zoom,res,match", [(0, 10, "zoom=0"), (-0.01, 10, "zoom=-0.01"), (0.01, 1, "resolution=1"),
                                            (0.01, 10**8, "resolution=100000000 is invalid")])  # fmt: skip
def test_bad_grid(zoom, res, match):
    v = torch.zeros(1, 2, 2)
    with pytest.raises(ValueError, match=match):
        decision_plane(Threshold(v), v, v, v, zoom, res)


@pytest.mark.parametrize("kw,match", [({"zooms": (0.01, 0)}, "zoom=0"), ({"resolution": 1}, "resolution=1"),
                                      ({"planes": 0}, "planes=0 is invalid")])  # fmt: skip
def test_bad_plane_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        PlaneSettings(**kw)


def test_plane_settings_key_holds_what_the_labels_depend_on():
    """The cache key: a batch size changes no label, so it reuses the result; any other setting does not."""
    base = PlaneSettings(zooms=[0.1, 0.01], planes=2, resolution=8)
    assert base.zooms == (0.1, 0.01) and base.key() == PlaneSettings((0.1, 0.01), 2, 8, batch_size=64).key()
    for other in ({"planes": 3}, {"resolution": 9}, {"seed": 1}, {"keep_images": 1}, {"zooms": (0.1,)}):
        assert PlaneSettings(**({"zooms": (0.1, 0.01), "planes": 2, "resolution": 8} | other)).key() != base.key()


def test_boundary_records_draw_the_planes_the_settings_say():
    torch.manual_seed(0)
    inputs = torch.randn(5, 1, 4, 4)
    settings = PlaneSettings(zooms=(0.5, 0.1), planes=3, resolution=9, seed=2, keep_images=1)
    records, images = boundary_records(Threshold(torch.ones(1, 4, 4) / 4), inputs, settings)
    assert [(r["zoom"], r["plane"]) for r in records] == [(z, p) for p in range(3) for z in (0.5, 0.1)]
    assert {r["resolution"] for r in records} == {9} and {r["plane_seed"] for r in records} == {2}
    kept = [(im["zoom"], im["plane"], tuple(im["labels"].shape)) for im in images]
    assert kept == [(0.5, 0, (9, 9)), (0.1, 0, (9, 9))]
    again, _ = boundary_records(Threshold(torch.ones(1, 4, 4) / 4), inputs, settings)
    assert [r["x0_index"] for r in again] == [r["x0_index"] for r in records]  # same seed, same planes


def test_fast_path_through_the_first_layer_matches_plain_evaluation():
    from regnet.analysis.boundaries import first_linear_layer
    from regnet.models.lenet import LeNet

    torch.manual_seed(0)
    model = LeNet().eval()
    x0 = torch.randn(1, 28, 28)
    assert first_linear_layer(model, x0[None]) is model.features[0]
    v1, v2 = orthonormal_directions(x0.shape, torch.Generator().manual_seed(0))
    fast = decision_plane(model, x0, v1, v2, 0.05, 24, batch_size=100)
    plain = decision_plane(model, x0, v1, v2, 0.05, 24, fast=False)
    assert len(fast.unique()) > 1  # the plane crosses a boundary
    assert (fast != plain).sum() <= 1  # equal up to float rounding at a boundary
    assert "forward" not in model.features[0].__dict__  # the model is left as it was
    assert first_linear_layer(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), torch.zeros(1, 1, 2, 2)) is None
