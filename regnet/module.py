"""The one LightningModule: a model, its loss, any number of regularizers, optimizer and schedule.

Read top to bottom: ``training_step`` is the whole training path.
Metrics are torchmetrics objects accumulated on the device and logged per epoch, so no step syncs the
host with the device. The training ones (accuracy, loss and penalty means) are saved in checkpoints, so a run
resumed mid-epoch reports the same epoch numbers as one that never stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from regnet.losses import get_loss
from regnet.regularizers.base import Regularizer, check_composition
from regnet.rng import rng_states, set_rng_states

STAGES = ("train", "val", "test")


def top_ks(top_k: Sequence[int], num_classes: int) -> tuple[int, ...]:
    """The k of the top-k accuracies and errors logged: 1 and each configured k in (1, num_classes)."""
    for k in top_k:
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"top_k={list(top_k)!r} is invalid: give positive integers (e.g. top_k=[3,5])")
    return (1, *sorted({k for k in top_k if 1 < k < num_classes}))


class ErrorRate(MulticlassAccuracy):
    """Top-k error rate, 1 − top-k accuracy, from the same device-side counts (logged per epoch)."""

    def compute(self) -> Tensor:
        return 1.0 - super().compute()


class EpochMean(Metric):
    """Mean of a per-batch scalar over an epoch, weighted by batch size (what ``self.log(..., on_epoch=True)``
    reports), kept as device tensors: no host sync per step, and a state checkpoints can carry (``persistent``)."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.zeros(()), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(()), dist_reduce_fx="sum")

    def update(self, value: Tensor, n: int) -> None:
        self.total += value.detach() * n
        self.count += n

    def compute(self) -> Tensor:
        return self.total / self.count


class RegNetModule(L.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        regularizers: Sequence[Regularizer] = (),
        optimizer: Callable[..., torch.optim.Optimizer] = partial(torch.optim.SGD, lr=0.1, momentum=0.9),
        scheduler: Callable | None = None,
        scheduler_interval: str = "step",
        loss: str = "cross_entropy",
        top_k: Sequence[int] = (5,),
    ):
        super().__init__()
        if scheduler_interval not in ("step", "epoch"):
            raise ValueError(f"sched.interval={scheduler_interval!r} is invalid: use step or epoch")
        self.model = model
        self.num_classes = num_classes
        self.top_k = top_ks(top_k, num_classes)
        self.regularizers = list(regularizers)
        check_composition(self.regularizers)  # at most one replaces the forward pass (_train_forward)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.loss_fn = get_loss(loss)
        self.needs_input_grad = any(r.needs_input_grad for r in self.regularizers)
        self.metrics = nn.ModuleDict({f"{stage}_metrics": self._metrics(stage) for stage in STAGES})
        train_means = ["data_loss", "loss"] + [r.name for r in self.regularizers]
        self.means = nn.ModuleDict(
            {
                f"{stage}_means": nn.ModuleDict({name: EpochMean() for name in names})
                for stage, names in (("train", train_means), ("val", ["loss"]), ("test", ["loss"]))
            }
        )
        # the training counts travel in checkpoints: a run resumed mid-epoch reports that epoch's numbers over
        # all its batches, not only those after the checkpoint
        self.metrics["train_metrics"].persistent(True)
        for mean in self.means["train_means"].values():
            mean.persistent(True)

    def _metrics(self, stage: str) -> MetricCollection:
        # validate_args=False: torchmetrics' check counts torch.unique(target) on the host, a device sync per update;
        # an out-of-range label already fails in the loss
        metrics, kwargs = {}, {"average": "micro", "validate_args": False}
        for k in self.top_k:
            suffix = "" if k == 1 else f"_top{k}"
            metrics[f"acc{suffix}"] = MulticlassAccuracy(self.num_classes, top_k=k, **kwargs)
            metrics[f"err{suffix}"] = ErrorRate(self.num_classes, top_k=k, **kwargs)
        return MetricCollection(metrics, prefix=f"{stage}/")

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    # --- training -------------------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch  # x: (N, C, H, W) normalised float, y: (N,) int64
        for reg in self.regularizers:
            x = reg.perturb_inputs(x)
        if self.needs_input_grad:
            x = x.detach().requires_grad_(True)
        logits = self._train_forward(x)  # (N, num_classes)
        loss = self.loss_fn(logits, y)
        means = self.means["train_means"]
        means["data_loss"].update(loss, len(y))
        for reg in self.regularizers:
            penalty = reg.penalty(self.model, x, logits, y)
            if penalty is not None:
                means[reg.name].update(penalty, len(y))
                loss = loss + penalty
        means["loss"].update(loss, len(y))
        self.metrics["train_metrics"].update(logits.detach(), y)
        return loss

    def _train_forward(self, x: Tensor) -> Tensor:
        for reg in self.regularizers:
            out = reg.forward(self.model, x)
            if out is not None:
                return out
        return self.model(x)

    # --- evaluation -----------------------------------------------------------------------------------
    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._eval_step("test", batch)  # logits, for callbacks (e.g. the confusion matrix)

    def _eval_step(self, stage: str, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        logits = self.model(x)
        self.means[f"{stage}_means"]["loss"].update(self.loss_fn(logits, y), len(y))
        self.metrics[f"{stage}_metrics"].update(logits, y)
        return logits

    # --- logging: once per epoch. A ``self.log`` per step costs more host time than a small model's whole step
    # on a GPU (benchmarks/RESULTS.md, "Host time per training step"). ----------------------------------------
    def on_train_epoch_end(self) -> None:  # runs before the epoch-end checkpoint, which then holds reset counts
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def _log_epoch(self, stage: str) -> None:
        """Log the stage's epoch means and metrics (torchmetrics syncs them across processes) and reset them."""
        metrics, means = self.metrics[f"{stage}_metrics"], self.means[f"{stage}_means"]
        if means["loss"].count > 0:  # (one host sync per epoch) counts, not update_count: a resumed run's are restored
            values = {f"{stage}/{name}": mean.compute() for name, mean in means.items() if mean.count > 0}
            self.log_dict(values | metrics.compute())
        for m in [metrics, *means.values()]:
            m.reset()

    # --- checkpoints: RNG states travel with them, so a resumed run draws the same dropout masks ---------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["regnet_rng"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "regnet_rng" in checkpoint:
            set_rng_states(checkpoint["regnet_rng"])
        state = checkpoint.get("state_dict")
        if state is not None:  # checkpoints saved before the training counts were: start them from zero
            for key, value in self.state_dict().items():
                if key.startswith(("metrics.train_metrics.", "means.train_means.")) and key not in state:
                    state[key] = value

    # --- optimisation ---------------------------------------------------------------------------------
    def configure_optimizers(self):
        weight_decay = sum(r.weight_decay for r in self.regularizers)
        kwargs = {"weight_decay": weight_decay} if weight_decay else {}
        optimizer = self.optimizer_factory(self.model.parameters(), **kwargs)
        if self.scheduler_factory is None:
            return optimizer
        if self.scheduler_interval == "step":
            total = int(self.trainer.estimated_stepping_batches)
        else:
            total = int(self.trainer.max_epochs)
        scheduler = self.scheduler_factory(optimizer, total_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}
