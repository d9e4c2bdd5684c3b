"""Per-sample augmentation: parameter ranges, per-sample independence, reproducibility, agreement with
torchvision's functional ops for fixed parameters, off at eval, and a few training steps per preset."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

import regnet.train
from regnet.data.augment import (
    PRESETS,
    affine_batch,
    check_preset,
    crop_batch,
    crop_resize_rotate_theta,
    erase_batch,
    hflip_batch,
    make_generator,
    sample_crop_flip,
    sample_erasing,
    sample_resized_crop_rotate,
)
from tests.conftest import compose_cfg, tiny

N = 2000


def gen(step=0):
    return make_generator(torch.device("cpu"), seed=0, step=step)


def test_resized_crop_rotate_ranges():
    p = sample_resized_crop_rotate(N, gen())
    assert p["area"].min() >= 0.8 and p["area"].max() <= 1.2
    assert p["area"].std() > 0.1  # per sample, spread over the range
    assert p["angle"].abs().max() <= 30 and p["angle"].min() < -25 and p["angle"].max() > 25
    assert (p["w"] <= 2).all() and (p["cx"].abs() <= 1 - p["w"] / 2 + 1e-6).all()


def test_crop_flip_ranges():
    p = sample_crop_flip(N, gen())
    shift = p["top"] - 4
    assert shift.min() == -4 and shift.max() == 4
    assert abs(p["flip"].float().mean() - 0.5) < 0.05


def test_erasing_ranges():
    p = sample_erasing(N, 28, 28, gen())
    frac = (p["h"] * p["w"]).float() / (28 * 28)
    assert abs(p["apply"].float().mean() - 0.5) < 0.05
    # rounding of h, w moves the area a little outside [0.02, 0.2]
    assert frac.min() >= 0.02 * 0.6 and frac.max() <= 0.2 * 1.35 and frac.median() > 0.05


@pytest.mark.parametrize("name", [n for n in PRESETS if n != "none"])
def test_per_sample_and_reproducible(name):
    x = torch.rand(1, 1, 28, 28).repeat(8, 1, 1, 1) if "mnist" in name else torch.rand(1, 3, 32, 32).repeat(8, 1, 1, 1)
    geo, post = PRESETS[name]
    out = post(geo(x, gen()), gen())
    assert not torch.equal(out, x)
    # same input in every row, different parameters per row → rows differ
    assert len({tuple(o.flatten().tolist()) for o in out}) >= 6
    assert torch.equal(out, post(geo(x, gen()), gen()))
    assert not torch.equal(out, post(geo(x, gen(1)), gen(1)))


def test_affine_matches_torchvision():
    x = torch.rand(4, 1, 28, 28)
    angles = torch.tensor([-30.0, -10.0, 5.0, 30.0])
    z = torch.zeros(4)
    out = affine_batch(x, crop_resize_rotate_theta(z, z, z + 2, z + 2, angles))
    for i, a in enumerate(angles.tolist()):
        ref = TF.rotate(x[i : i + 1], a, interpolation=TF.InterpolationMode.BILINEAR)
        inner = (slice(None), slice(None), slice(8, 20), slice(8, 20))  # away from the fill border
        torch.testing.assert_close(out[i : i + 1][inner], ref[inner], atol=1e-4, rtol=0)
    # a crop of half the side at the top-left, resized: scale 2 about the top-left quadrant's centre
    half = torch.full((4,), 1.0)
    out = affine_batch(x, crop_resize_rotate_theta(-half / 2, -half / 2, half, half, z))
    ref = TF.resized_crop(x, 0, 0, 14, 14, [28, 28], interpolation=TF.InterpolationMode.BILINEAR, antialias=False)
    torch.testing.assert_close(out[..., 2:-2, 2:-2], ref[..., 2:-2, 2:-2], atol=1e-4, rtol=0)


def test_crop_flip_erase_exact():
    x = torch.rand(3, 3, 32, 32)
    top, left = torch.tensor([0, 4, 8]), torch.tensor([8, 4, 1])
    out = crop_batch(x, 4, top, left)
    for i in range(3):
        ref = TF.crop(TF.pad(x[i], [4, 4, 4, 4]), int(top[i]), int(left[i]), 32, 32)
        assert torch.equal(out[i], ref)
    flip = torch.tensor([True, False, True])
    out = hflip_batch(x, flip)
    for i in range(3):
        assert torch.equal(out[i], TF.horizontal_flip(x[i]) if flip[i] else x[i])
    t, l, h, w = torch.tensor([1, 5, 0]), torch.tensor([2, 0, 9]), torch.tensor([3, 7, 4]), torch.tensor([5, 2, 6])
    apply = torch.tensor([True, True, False])
    out = erase_batch(x, t, l, h, w, apply)
    for i in range(3):
        ref = TF.erase(x[i], int(t[i]), int(l[i]), int(h[i]), int(w[i]), torch.tensor(0.0)) if apply[i] else x[i]
        assert torch.equal(out[i], ref)


def test_unknown_preset():
    with pytest.raises(ValueError, match="data.augment='flip'.*mnist_affine"):
        check_preset("flip")
    from regnet.data.mnist import MNIST

    with pytest.raises(ValueError, match="data.augment='flip'"):
        MNIST(augment="flip")


@pytest.mark.parametrize(
    "data,preset",
    [("mnist", "mnist_affine"), ("mnist", "mnist_affine_erasing"), ("cifar10", "cifar_crop_flip"), ("mnist", "none")],
)
def test_training_steps_and_off_at_eval(data_root, tmp_path, data, preset, monkeypatch):
    calls = {"train": 0, "eval": 0}
    orig = regnet.data.base.ImageDataModule.on_after_batch_transfer

    def spy(self, batch, idx):
        out = orig(self, batch, idx)
        key = "train" if self.trainer.training else "eval"
        same = torch.allclose(out[0], self.normalize(batch[0]))
        calls[key] += 1
        if key == "eval":
            assert same  # no augmentation at test time
        elif preset != "none":
            assert not same
        return out

    monkeypatch.setattr(regnet.data.base.ImageDataModule, "on_after_batch_transfer", spy)
    cfg = compose_cfg(
        [f"data.root={data_root}", f"data.augment={preset}", *tiny(data=data)], return_hydra_config=True
    )
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
    HydraConfig.instance().set_config(copy.deepcopy(cfg))
    regnet.train.train(cfg, tmp_path)
    assert calls["train"] == 3 and calls["eval"] >= 1
    assert (tmp_path / "results.json").exists()
