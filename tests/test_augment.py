"""Per-sample augmentation: parameter ranges, per-sample independence, reproducibility, agreement with
torchvision's functional ops for fixed parameters, off at eval, and a few training steps per preset."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import open_dict

import regnet.train
from regnet.augment import Augmentation, make_generator, names, preset
from regnet.augment.erasing import sample_erasing
from regnet.augment.kernels import affine_batch, crop_batch, crop_resize_rotate_theta, erase_batch, hflip_batch
from regnet.augment.resized_crop_rotate import sample_resized_crop_rotate
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


def test_crop_and_flip_ranges():
    """RandomCrop(padding 4) shifts each image by −4..4 pixels (read off the zero band it pads in);
    RandomHorizontalFlip(0.5) mirrors about half of them."""
    from regnet.augment.crop import RandomCrop
    from regnet.augment.flip import RandomHorizontalFlip

    out = RandomCrop(padding=4)(torch.ones(N, 1, 32, 32), gen())
    rows = out[:, 0].amax(dim=2) == 0  # (N, 32) all-zero rows
    shift = rows[:, 16:].sum(1) - rows[:, :16].sum(1)  # the image moved up (> 0) or down (< 0)
    assert shift.min() == -4 and shift.max() == 4 and len(shift.unique()) == 9
    x = torch.zeros(N, 1, 4, 4)
    x[..., 0] = 1  # left column lit
    flipped = RandomHorizontalFlip(p=0.5)(x, gen())[..., -1].amax(dim=(1, 2)) == 1
    assert abs(flipped.float().mean() - 0.5) < 0.05


def test_erasing_ranges():
    p = sample_erasing(N, 28, 28, gen())
    frac = (p["h"] * p["w"]).float() / (28 * 28)
    assert abs(p["apply"].float().mean() - 0.5) < 0.05
    # rounding of h, w moves the area a little outside [0.02, 0.2]
    assert frac.min() >= 0.02 * 0.6 and frac.max() <= 0.2 * 1.35 and frac.median() > 0.05


def built(name: str) -> Augmentation:
    """``augment=<name>`` as the CLI composes and builds it."""
    return instantiate(compose_cfg([f"augment={name}"]).data.augment)


@pytest.mark.parametrize("name", [n for n in names() if n != "none"])
def test_per_sample_and_reproducible(name):
    x = torch.rand(1, 1, 28, 28).repeat(8, 1, 1, 1) if "mnist" in name else torch.rand(1, 3, 32, 32).repeat(8, 1, 1, 1)
    aug = built(name)

    def apply(g):
        return aug.after_normalization(aug.before_normalization(x, g), g)

    out = apply(gen())
    assert not torch.equal(out, x)
    # same input in every row, different parameters per row → rows differ
    assert len({tuple(o.flatten().tolist()) for o in out}) >= 6
    assert torch.equal(out, apply(gen()))
    assert not torch.equal(out, apply(gen(1)))


def test_presets_say_what_they_are():
    """The YAML is the whole preset: its ops and their parameters, as the docstrings name them."""
    assert names() == ["cifar_crop_flip", "mnist_affine", "mnist_affine_erasing", "none"]
    assert not built("none")
    (affine,) = built("mnist_affine").geometric
    assert (affine.scale, affine.degrees) == ((0.8, 1.2), 30.0)
    erasing = built("mnist_affine_erasing")
    assert [type(op).__name__ for op in erasing.geometric + erasing.normalized] == [
        "RandomResizedCropRotate",
        "RandomErasing",
    ]
    assert (erasing.normalized[0].p, erasing.normalized[0].scale) == (0.5, (0.02, 0.2))
    crop, flip = built("cifar_crop_flip").geometric
    assert (crop.padding, flip.p) == (4, 0.5)


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
    t, left, h, w = torch.tensor([1, 5, 0]), torch.tensor([2, 0, 9]), torch.tensor([3, 7, 4]), torch.tensor([5, 2, 6])
    apply = torch.tensor([True, True, False])
    out = erase_batch(x, t, left, h, w, apply)
    for i in range(3):
        ref = TF.erase(x[i], int(t[i]), int(left[i]), int(h[i]), int(w[i]), torch.tensor(0.0)) if apply[i] else x[i]
        assert torch.equal(out[i], ref)


def test_unknown_or_bad_augmentation_one_line():
    from regnet.data.mnist import MNIST
    from regnet.errors import one_line

    with pytest.raises(Exception) as err:
        compose_cfg(["augment=flip"])
    assert one_line(err.value).startswith("unknown augment 'flip' (available: cifar_crop_flip, mnist_affine,")
    with pytest.raises(ValueError, match="data.augment='flip' is unknown: use augment=<name> with one of cifar_crop"):
        MNIST(augment="flip")
    cfg = compose_cfg(["augment=mnist_affine", "data.augment.geometric.0.degrees=-5"])
    with pytest.raises(Exception) as err:
        instantiate(cfg.data)
    assert one_line(err.value) == ("data.augment: RandomResizedCropRotate degrees=-5 is invalid: it must be ≥ 0")


def test_old_spelling_data_augment_still_works_with_a_hint(caplog):
    """``data.augment=cifar_crop_flip`` (README, older runs' results.json) builds the same preset."""
    preset.cache_clear()
    cfg = compose_cfg(["data=cifar10", "data.augment=cifar_crop_flip"])
    with caplog.at_level("WARNING", logger="regnet.augment"):
        old = instantiate(cfg.data).augment
    assert "data.augment=cifar_crop_flip is the old spelling: write augment=cifar_crop_flip" in caplog.text
    new = built("cifar_crop_flip")
    x = torch.rand(8, 3, 32, 32)
    assert torch.equal(old.before_normalization(x, gen()), new.before_normalization(x, gen()))


@pytest.mark.parametrize("preset", names())
def test_training_steps_and_off_at_eval(data_root, tmp_path, preset, monkeypatch):
    """Every conf/augment YAML trains a few steps: it changes every training batch and no evaluation batch."""
    data = "cifar10" if preset.startswith("cifar") else "mnist"
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
    cfg = compose_cfg([f"data.root={data_root}", f"augment={preset}", *tiny(data=data)], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
    HydraConfig.instance().set_config(copy.deepcopy(cfg))
    regnet.train.train(cfg, tmp_path)
    assert calls["train"] == 3 and calls["eval"] >= 1
    assert (tmp_path / "results.json").exists()
