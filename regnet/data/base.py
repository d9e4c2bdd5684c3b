"""The DataModule every dataset shares: load a split once as uint8, keep it on the training device, batch
it there, and normalise (and augment) each batch on that device after transfer.

A dataset file (``mnist.py``, ``cifar100.py``, ...) only says where its files are and how torchvision
reads them (``load``), plus its constants (classes, channels, size, and the mean/std its studies used).
The augmentation (``augment=<name>``, ``regnet/augment``) comes in built, as ``data.augment``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from regnet.augment import Augmentation, make_generator, preset
from regnet.data.batches import TensorBatches
from regnet.locks import exclusive


class DatasetNotFoundError(FileNotFoundError):
    """Dataset files are missing and could not be downloaded; the message says where and how to fix it."""


class CorruptDatasetError(RuntimeError):
    """Dataset files exist but cannot be read."""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _as_tuple(value):
    """A list from the config as a tuple; anything else (a bare number, a string) as it is, for the check."""
    return tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else value


def check_settings(
    dataset: type,
    *,
    batch_size,
    eval_batch_size,
    val_fraction,
    val_seed,
    val_on_test,
    download,
    on_device,
    pad,
    mean,
    std,
    in_channels,
    num_classes,
    image_size,
) -> None:
    """One line naming the ``data.`` key of the first bad setting; nothing is read before these pass."""
    if not _is_int(pad) or pad < 0:  # first: image_size depends on it
        raise ValueError(f"data.pad={pad!r} is invalid: it must be an integer ≥ 0")
    # the config repeats these so that models can read them (${data.num_classes}); they must agree
    for key, given, actual in (
        ("in_channels", in_channels, dataset.in_channels),
        ("num_classes", num_classes, dataset.num_classes),
        ("image_size", image_size, dataset.image_size + 2 * pad),
    ):
        if given is not None and given != actual:
            raise ValueError(f"data.{key}={given!r} does not match {dataset.name}: it is {actual} (pad={pad})")
    for key, value in (("data.batch_size", batch_size), ("data.eval_batch_size", eval_batch_size)):
        if not _is_int(value) or value <= 0:
            raise ValueError(f"{key}={value!r} is invalid: it must be a positive integer")
    if not _is_number(val_fraction) or not (val_fraction == 0 or 0 < val_fraction < 1):
        raise ValueError(f"data.val_fraction={val_fraction!r} is invalid: use 0 (no validation) or a value in (0, 1)")
    if not _is_int(val_seed) or not 0 <= val_seed < 2**63:
        raise ValueError(f"data.val_seed={val_seed!r} is invalid: it must be an integer ≥ 0")
    if val_on_test is True and val_fraction != 0:
        raise ValueError(
            f"data.val_on_test=true with data.val_fraction={val_fraction!r}: validate on a split of the training set "
            "or on the test set, not both"
        )
    for key, value in (("data.download", download), ("data.on_device", on_device), ("data.val_on_test", val_on_test)):
        if not isinstance(value, bool):
            raise ValueError(f"{key}={value!r} is invalid: use true or false")
    for key, values, positive in (("data.mean", mean, False), ("data.std", std, True)):
        ok = isinstance(values, tuple) and len(values) == dataset.in_channels
        if not ok or not all(_is_number(v) and (v > 0 or not positive) for v in values):
            what = "a positive number" if positive else "a number"
            shown = list(values) if isinstance(values, tuple) else values
            raise ValueError(
                f"{key}={shown!r} is invalid: give {what} per channel ({dataset.name} has "
                f"{dataset.in_channels}), e.g. {key}={list(getattr(dataset, key[5:]))}"
            )


class ImageDataModule(L.LightningDataModule):
    #: set by each dataset
    name: str = ""
    num_classes: int = 0
    in_channels: int = 0
    image_size: int = 0
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __init__(
        self,
        root: str = "./data",
        batch_size: int = 100,
        eval_batch_size: int = 1000,
        val_fraction: float = 0.0,
        val_seed: int = 0,
        val_on_test: bool = False,
        download: bool = True,
        on_device: bool = True,
        pad: int = 0,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        seed: int = 0,
        augment: Augmentation | str | None = None,
        in_channels: int | None = None,
        num_classes: int | None = None,
        image_size: int | None = None,
    ):
        super().__init__()
        native = type(self)
        mean = native.mean if mean is None else _as_tuple(mean)
        std = native.std if std is None else _as_tuple(std)
        check_settings(native, batch_size=batch_size, eval_batch_size=eval_batch_size, val_fraction=val_fraction,
                       val_seed=val_seed, val_on_test=val_on_test, download=download, on_device=on_device, pad=pad,
                       mean=mean, std=std, in_channels=in_channels, num_classes=num_classes,
                       image_size=image_size)  # fmt: skip
        self.root = Path(os.path.expanduser(str(root)))
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_fraction, self.val_seed, self.val_on_test = float(val_fraction), val_seed, val_on_test
        self.download, self.on_device, self.pad, self.seed = download, on_device, pad, seed
        self.mean, self.std = mean, std
        self.augment = preset(augment) if isinstance(augment, str) else augment or Augmentation()
        self.image_size = native.image_size + 2 * pad
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}

    # --- what each dataset provides -------------------------------------------------------------------
    def load(self, train: bool, download: bool) -> tuple[Tensor, Tensor]:
        """Read one split from ``self.root`` with torchvision: (uint8 (N, C, H, W), int64 (N,))."""
        raise NotImplementedError

    def locate(self) -> None:
        """Make the files available under ``self.root`` (download, or copy from a local source)."""
        self.load(train=False, download=self.download)

    # --- Lightning hooks ------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """:meth:`locate` under an exclusive lock on ``<root>/.regnet-data.lock``: the jobs of a parallel sweep
        on one machine would otherwise copy or download the same files into the same place at once (one job's
        rename then failed with "No such file or directory"). The first job fetches; the others wait, then
        find the files."""
        with exclusive(self.root / ".regnet-data.lock"):
            self.locate()

    def setup(self, stage: str | None = None) -> None:
        device = self._device()
        if self.splits:  # loaded already (e.g. by a pre-flight check on the CPU): only move
            self.splits = {k: (x.to(device), y.to(device)) for k, (x, y) in self.splits.items()}
            self._mean, self._std = self._mean.to(device), self._std.to(device)
            return
        train_x, train_y = self.load(train=True, download=False)
        test_x, test_y = self.load(train=False, download=False)
        if self.pad:
            p = self.pad
            train_x = torch.nn.functional.pad(train_x, (p, p, p, p))
            test_x = torch.nn.functional.pad(test_x, (p, p, p, p))
        if self.val_fraction > 0:
            g = torch.Generator().manual_seed(self.val_seed)
            perm = torch.randperm(len(train_y), generator=g)
            n_val = max(1, round(self.val_fraction * len(train_y)))
            val_idx, train_idx = perm[:n_val], perm[n_val:]
            self.splits["val"] = (train_x[val_idx], train_y[val_idx])
            train_x, train_y = train_x[train_idx], train_y[train_idx]
        self.splits["train"] = (train_x, train_y)
        self.splits["test"] = (test_x, test_y)
        if self.val_on_test:  # the per-epoch curves of studies that validated on their test set (lenet5_lecun)
            self.splits["val"] = self.splits["test"]
        self.splits = {k: (x.to(device).contiguous(), y.to(device)) for k, (x, y) in self.splits.items()}
        self._mean = torch.tensor(self.mean, device=device).view(1, -1, 1, 1)
        self._std = torch.tensor(self.std, device=device).view(1, -1, 1, 1)

    def _device(self) -> torch.device:
        if self.on_device and self.trainer is not None:
            return self.trainer.strategy.root_device
        return torch.device("cpu")

    def _batches(self, split: str, train: bool) -> TensorBatches:
        x, y = self.splits[split]
        trainer = self.trainer
        overfit = trainer is not None and bool(trainer.overfit_batches)  # Lightning's contract: the same batches
        return TensorBatches(
            x,
            y,
            self.batch_size if train else self.eval_batch_size,
            shuffle=train and not overfit,
            seed=self.seed,
            epoch_fn=(lambda: trainer.current_epoch) if trainer is not None else (lambda: 0),
            taken_fn=(lambda: trainer.fit_loop.epoch_loop.batch_progress.current.ready)
            if trainer is not None and train
            else None,
            rank=trainer.global_rank if trainer is not None and train else 0,
            world_size=trainer.world_size if trainer is not None and train else 1,
        )

    def train_dataloader(self) -> TensorBatches:
        return self._batches("train", train=True)

    @property
    def has_validation(self) -> bool:
        """Whether fit validates every epoch: on a held-out split of the training set or on the test set."""
        return self.val_fraction > 0 or self.val_on_test

    def val_dataloader(self) -> TensorBatches | list:
        return self._batches("val", train=False) if "val" in self.splits else []

    def test_dataloader(self) -> TensorBatches:
        return self._batches("test", train=False)

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 (N, C, H, W) in [0, 255] → float (N, C, H, W), (x/255 − mean)/std."""
        return normalize(images, self._mean, self._std)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        if not self.augment or self.trainer is None or not self.trainer.training:
            return self.normalize(images), labels
        g = make_generator(images.device, self.seed, augment_index(self.trainer), self.trainer.global_rank)
        x = self.augment.before_normalization(images.float() / 255.0, g)  # [0, 1] images, zero fill
        return self.augment.after_normalization(normalize(x, self._mean, self._std), g), labels

    @property
    def pixel_stats(self) -> dict:
        """Normalisation constants, so analysis can map ε in pixel units into the model's input space."""
        return {"mean": list(self.mean), "std": list(self.std)}


def augment_index(trainer: L.Trainer) -> int:
    """The training batch being augmented, counted over the whole fit from 0: it seeds the batch's augmentation
    generator. Lightning's own count of the batches taken before this one (``batch_progress.total.ready``, counted
    after the batch's transfer) travels in every checkpoint, so a resumed run draws the augmentations an
    uninterrupted one draws (a counter of this module's own started from 0 again after a restart)."""
    return trainer.fit_loop.epoch_loop.batch_progress.total.ready


def missing(name: str, root: Path, expected: str, hint: str = "") -> DatasetNotFoundError:
    """One-line error: which dataset, where it was searched, how to fix it."""
    fix = f"; {hint}" if hint else ""
    return DatasetNotFoundError(
        f"{name} not found under {root} (looked for {expected}) and it could not be downloaded: "
        f"run once with network access, copy the files there, or set data.root=... / $REGNET_DATA{fix}"
    )


def normalize(images: Tensor, mean, std) -> Tensor:
    """(x − mean) / std per channel for images (N, C, H, W) in pixel units: uint8 in [0, 255] (divided by 255
    first) or float in [0, 1]. ``mean``, ``std``: C numbers, or tensors of shape (C,) or (1, C, 1, 1); the
    constants of the dataset (``ImageDataModule.mean``/``std``, ``results.json``'s ``normalization``)."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std
