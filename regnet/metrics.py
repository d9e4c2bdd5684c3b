"""Epoch metrics over a member axis: one definition for an ordinary run (S = 1) and a stack of S runs.

Both are torchmetrics ``Metric``s, so their states are device tensors, summed across DDP processes
(``dist_reduce_fx="sum"``), reset per epoch, and carried in checkpoints where the module makes them ``persistent``.
An ``update`` is a few kernels whatever S is: no host sync and no Python loop over members (a LeNet step is short
enough on a GPU for per-step host work to show; benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchmetrics import Metric

STAGES = ("train", "val", "test")
#: the state_dict prefixes of the training counts that travel in checkpoints (:func:`epoch_metrics`)
TRAIN_COUNTS = ("metrics.train_metrics.", "means.train_means.")


def top_ks(top_k: Sequence[int], num_classes: int) -> tuple[int, ...]:
    """The k of the top-k accuracies and errors logged: 1 and each configured k in (1, num_classes)."""
    for k in top_k:
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"top_k={list(top_k)!r} is invalid: give positive integers (e.g. top_k=[3,5])")
    return (1, *sorted({k for k in top_k if 1 < k < num_classes}))


def accuracy_names(top_k: Sequence[int]) -> list[str]:
    """The names ``TopKAccuracy.compute`` is logged under, in ``top_k``'s order: acc, err, acc_top5, err_top5, ..."""
    return [f"{kind}{'' if k == 1 else f'_top{k}'}" for k in top_k for kind in ("acc", "err")]


class TopKAccuracy(Metric):
    """Top-k accuracy per member and per k (the ILSVRC top-5 measure, Russakovsky et al. 2015, Sec. 4.1): the
    fraction of samples whose label is among the k largest logits.

    States: ``correct`` (S, |top_k|) and ``count`` (S,), int64 counts. ``compute`` gives accuracy (S, |top_k|) =
    correct / count, float32 (torchmetrics' micro ``MulticlassAccuracy``, to the bit); the error is 1 − accuracy.
    One ``topk`` of the largest k serves every k > 1, and top-1 is ``argmax`` (the first maximal logit, as
    torchmetrics), so on exactly tied logits an intermediate k can differ from a separate ``topk(k)``, whose choice
    among ties is itself arbitrary.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, top_k: Sequence[int] = (1,), members: int = 1) -> None:
        super().__init__()
        if list(top_k) != sorted(set(top_k)) or not top_k or top_k[0] < 1 or members < 1:
            raise ValueError(f"top_k={list(top_k)!r} members={members}: give increasing k >= 1 and members >= 1")
        self.top_k, self.members = tuple(top_k), members
        self.add_state("correct", torch.zeros(members, len(self.top_k), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(members, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor) -> None:
        """logits: (N, K) or (N, S, K); target: (N,) or (N, S) class indices."""
        n = target.shape[0]
        logits = logits.reshape(n, self.members, logits.shape[-1])  # (N, S, K)
        y = target.reshape(n, self.members, 1)  # (N, S, 1)
        hits = []  # each (N, S, 1) bool
        if self.top_k[0] == 1:
            hits.append(logits.argmax(-1, keepdim=True) == y)
        if self.top_k[-1] > 1:
            in_top = logits.topk(self.top_k[-1], dim=-1).indices == y  # (N, S, k_max): at most one True a row
            hits += [in_top[..., :k].any(-1, keepdim=True) for k in self.top_k if k > 1]
        self.correct += torch.cat(hits, -1).sum(0)
        self.count += n

    def compute(self) -> Tensor:
        count = self.count.float().unsqueeze(-1)  # (S, 1)
        return torch.where(count > 0, self.correct.float() / count, torch.zeros((), device=count.device))

    def named(self) -> dict[str, Tensor]:
        """``compute``'s accuracies and the errors 1 − accuracy, each (S,), under ``accuracy_names(top_k)``."""
        acc = self.compute().reshape(self.members, len(self.top_k))  # torchmetrics squeezes a one-element result
        values = [v for i in range(len(self.top_k)) for v in (acc[:, i], 1.0 - acc[:, i])]
        return dict(zip(accuracy_names(self.top_k), values, strict=True))


class EpochMean(Metric):
    """Mean over an epoch of a per-batch scalar per member, weighted by batch size (what
    ``self.log(..., on_epoch=True)`` reports). States ``total`` and ``count``, (S,) in ``dtype``."""

    full_state_update = False
    is_differentiable = False

    def __init__(self, members: int = 1, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.add_state("total", torch.zeros(members, dtype=dtype), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(members, dtype=dtype), dist_reduce_fx="sum")

    def update(self, value: Tensor, n: int) -> None:
        """value: () or (S,), the batch's mean; n: the batch size."""
        self.total += value.detach() * n
        self.count += n

    def compute(self) -> Tensor:
        """(S,); () for S = 1 (torchmetrics squeezes a one-element result)."""
        return self.total / self.count


def epoch_metrics(
    top_k: Sequence[int], train_means: Sequence[str], members: int = 1, dtype: torch.dtype = torch.float32
) -> tuple[nn.ModuleDict, nn.ModuleDict]:
    """Per stage, ``<stage>_metrics`` (a ``TopKAccuracy``) and ``<stage>_means`` (``EpochMean`` s: ``train_means``
    in training, ``loss`` in validation and test). The training ones travel in checkpoints: a run resumed mid-epoch
    reports that epoch's numbers over all its batches, not only those after the checkpoint."""
    metrics = nn.ModuleDict({f"{stage}_metrics": TopKAccuracy(top_k, members) for stage in STAGES})
    means = nn.ModuleDict(
        {
            f"{stage}_means": nn.ModuleDict({name: EpochMean(members, dtype) for name in names})
            for stage, names in (("train", train_means), ("val", ["loss"]), ("test", ["loss"]))
        }
    )
    for metric in [metrics["train_metrics"], *means["train_means"].values()]:
        metric.persistent(True)
    return metrics, means


def epoch_values(metrics: TopKAccuracy, means: nn.ModuleDict) -> dict[str, Tensor]:
    """A stage's epoch values, each (S,): the means with any count (``loss`` first needed), then the accuracies and
    errors; {} if the stage saw no batch (a resumed run's restored counts count). One host sync per mean, per epoch.
    Resets them all."""
    values = {}
    if bool(means["loss"].count.any()):
        values = {name: mean.compute().reshape(-1) for name, mean in means.items() if bool(mean.count.any())}
        values |= metrics.named()
    for metric in [metrics, *means.values()]:
        metric.reset()
    return values


def fill_counts(state: dict, current: dict[str, Tensor], found: dict[str, Tensor]) -> None:
    """Complete a checkpoint's ``state_dict`` (in place) with the training counts of ``epoch_metrics``: those
    ``found`` in an older layout where they fit, zeros (``current``, reset) where the checkpoint has none (saved
    before the counts travelled, or in a layout that does not map)."""
    for key, value in current.items():
        if key.startswith(TRAIN_COUNTS):
            if key in found and found[key].numel() == value.numel():
                state[key] = found[key].reshape(value.shape).to(value.dtype)
            elif key not in state:
                state[key] = value


__all__ = [
    "STAGES",
    "TRAIN_COUNTS",
    "EpochMean",
    "TopKAccuracy",
    "accuracy_names",
    "epoch_metrics",
    "epoch_values",
    "fill_counts",
    "top_ks",
]
