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

from regnet.losses import get_loss
from regnet.metrics import TRAIN_COUNTS, epoch_metrics, epoch_values, fill_counts, top_ks
from regnet.regularizers.base import Regularizer, check_composition
from regnet.rng import rng_states, set_rng_states


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
        train_means = ["data_loss", "loss"] + [r.name for r in self.regularizers]
        self.metrics, self.means = epoch_metrics(self.top_k, train_means)  # regnet/metrics.py, members S = 1

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
        self.metrics["train_metrics"].update(logits, y)
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
        """Log the stage's epoch means and accuracies as ``<stage>/<name>`` (torchmetrics syncs them across
        processes) and reset them."""
        values = epoch_values(self.metrics[f"{stage}_metrics"], self.means[f"{stage}_means"])
        if values:
            self.log_dict({f"{stage}/{name}": value[0] for name, value in values.items()})

    # --- checkpoints: RNG states travel with them, so a resumed run draws the same dropout masks ---------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["regnet_rng"] = rng_states()
        if self.trainer.world_size > 1:  # every rank saves together (rank 0 writes): the file holds the run's counts
            state = checkpoint["state_dict"]
            for key in [k for k in state if k.startswith(TRAIN_COUNTS)]:
                state[key] = self.trainer.strategy.reduce(state[key].clone(), reduce_op="sum")

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "regnet_rng" in checkpoint:
            set_rng_states(checkpoint["regnet_rng"])
        state = checkpoint.get("state_dict")
        if state is not None:
            fill_counts(state, self.state_dict(), self._old_counts(state))
            if self._trainer is not None and self.trainer.global_rank > 0:  # rank 0 alone carries the run's counts
                for key in [k for k in state if k.startswith(TRAIN_COUNTS)]:
                    state[key] = torch.zeros_like(state[key])

    def _old_counts(self, state: dict) -> dict[str, Tensor]:
        """The training counts of a checkpoint written before regnet/metrics.py (a torchmetrics
        ``MulticlassAccuracy`` and ``ErrorRate`` per k, scalar means), taken out of ``state`` in today's layout."""
        old = {k: state.pop(k) for k in list(state) if k.startswith("metrics.train_metrics.") and k.count(".") == 3}
        found = {k: state.pop(k) for k in list(state) if k.startswith("means.train_means.") and state[k].dim() == 0}
        acc = [f"metrics.train_metrics.acc{'' if k == 1 else f'_top{k}'}" for k in self.top_k]
        if all(f"{name}.tp" in old for name in acc):  # micro accuracy: tp = hits, tp + fn = samples
            found["metrics.train_metrics.correct"] = torch.stack([old[f"{name}.tp"].sum() for name in acc])
            found["metrics.train_metrics.count"] = old[f"{acc[0]}.tp"].sum() + old[f"{acc[0]}.fn"].sum()
        return found

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
