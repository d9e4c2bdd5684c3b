"""A stack's data: the members' shared dataset loaded once (their DataModule), each member's own batch order.

Training batches are ``(images (N, S, C, H, W), labels (N, S))``: member s's column is exactly the batch its
separate run would draw at that step (``TensorBatches`` with the member's ``data.seed``, the same epoch, the
same resume point), gathered for all members in one indexing op. Augmentation, if any, uses each member's
own per-batch generator (``augment.make_generator`` with its seed and the batch's index, ``augment_index``).
Evaluation batches are shared.
"""

from __future__ import annotations

from collections.abc import Iterator

import lightning as L
import torch
from torch import Tensor

from regnet.augment import make_generator
from regnet.data.base import ImageDataModule, augment_index, normalize
from regnet.data.batches import TensorBatches


class StackedBatches:
    """Iterable of (images uint8 (B, S, C, H, W), labels (B, S)): one ``TensorBatches`` order per member."""

    def __init__(self, members: list[TensorBatches]):
        self.members = members

    def __len__(self) -> int:
        return len(self.members[0])

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        first = self.members[0]
        orders = torch.stack([m._order() for m in self.members])  # (S, n)
        start = first.taken_fn() if first.taken_fn is not None else 0
        for i in range(start, len(self)):
            idx = orders[:, i * first.batch_size : (i + 1) * first.batch_size].t()  # (B, S)
            yield first.images[idx], first.labels[idx]


class StackedData(L.LightningDataModule):
    def __init__(self, base: ImageDataModule, seeds: list[int]):
        super().__init__()
        self.base, self.seeds = base, list(seeds)
        self.name, self.pixel_stats = base.name, base.pixel_stats
        self.val_fraction = base.val_fraction

    def prepare_data(self) -> None:
        self.base.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        self.base.trainer = self.trainer
        self.base.setup(stage)

    def train_dataloader(self) -> StackedBatches:
        b, trainer = self.base, self.trainer
        x, y = b.splits["train"]
        return StackedBatches(
            [
                TensorBatches(
                    x,
                    y,
                    b.batch_size,
                    shuffle=True,
                    seed=seed,
                    epoch_fn=lambda: trainer.current_epoch,
                    taken_fn=lambda: trainer.fit_loop.epoch_loop.batch_progress.current.ready,
                )
                for seed in self.seeds
            ]
        )

    def val_dataloader(self):
        return self.base.val_dataloader()

    def test_dataloader(self):
        return self.base.test_dataloader()

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        b = self.base
        if images.dim() == 4:  # evaluation: one batch for all members
            return b.normalize(images), labels
        n, S = images.shape[:2]
        if not b.augment:
            return normalize(images.flatten(0, 1), b._mean, b._std).view(n, S, *images.shape[2:]), labels
        step = augment_index(self.trainer)  # the batch's index in the fit, as its separate run's
        out = []
        for s, seed in enumerate(self.seeds):  # each member's own per-batch generator, as its separate run's
            g = make_generator(images.device, seed, step, 0)
            x = b.augment.before_normalization(images[:, s].float() / 255.0, g)
            out.append(b.augment.after_normalization(normalize(x, b._mean, b._std), g))
        return torch.stack(out, dim=1), labels
