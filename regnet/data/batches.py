"""Batches straight from tensors that already live on the training device.

No DataLoader, no workers, no per-sample Python: the whole split is one uint8 tensor (N, C, H, W) on the
device, an epoch is one device-side ``randperm`` (seeded by (seed, epoch), so a resumed run sees the same
order), and a batch is one gather. Under DDP each rank takes every ``world_size``-th index of the same
permutation, truncated so that every rank runs the same number of steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor


class TensorBatches:
    """Iterable of (images uint8 (B, C, H, W), labels int64 (B,)) batches."""

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        epoch_fn: Callable[[], int] = lambda: 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ):
        if batch_size <= 0:
            raise ValueError(f"batch_size={batch_size!r} is invalid: it must be a positive integer")
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self.shuffle, self.seed, self.epoch_fn = shuffle, seed, epoch_fn
        self.rank, self.world_size = rank, world_size
        self.drop_last = drop_last

    def _per_rank(self) -> int:
        return len(self.labels) // self.world_size if self.world_size > 1 else len(self.labels)

    def __len__(self) -> int:
        n = self._per_rank()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self) -> Tensor:
        n, device = len(self.labels), self.labels.device
        if self.shuffle:
            g = torch.Generator(device=device)
            g.manual_seed(self.seed * 1_000_003 + self.epoch_fn())
            order = torch.randperm(n, device=device, generator=g)
        else:
            order = torch.arange(n, device=device)
        if self.world_size > 1:
            order = order[self.rank :: self.world_size][: self._per_rank()]
        return order

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self._order()
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.images[idx], self.labels[idx]
