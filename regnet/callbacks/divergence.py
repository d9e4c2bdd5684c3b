"""Stop a run the moment its training loss stops being finite.

On a CPU the host reads each step's loss (free there) and stops at the first bad one. On a GPU the check never
blocks the device on every step: a device-side scalar remembers the first optimizer step whose loss was NaN/Inf
(a ``torch.where``, no host sync), and the host reads it every ``check_every_gpu`` steps and at the end of each
epoch. The recorded step is the first bad one either way; on a GPU the run stops at most ``check_every_gpu − 1``
steps after it.
"""

from __future__ import annotations

import math

import lightning as L
import torch

from regnet.errors import Diverged


def record_divergence_(first_bad: torch.Tensor, bad_loss: torch.Tensor, loss: torch.Tensor, step: int) -> None:
    """Where ``loss`` (() for a run, (S,) for a stack's members) is not finite and no bad step is recorded yet,
    record ``step`` in ``first_bad`` (-1 while finite) and the loss in ``bad_loss``: in place, on the device, no
    host sync. The one rule an ordinary run (``DivergenceCheck``) and a stack (``StackedModule``) share."""
    newly_bad = ~torch.isfinite(loss) & (first_bad < 0)
    first_bad.copy_(torch.where(newly_bad, torch.full_like(first_bad, step), first_bad))
    bad_loss.copy_(torch.where(newly_bad, loss.to(bad_loss.dtype), bad_loss))


class DivergenceCheck(L.Callback):
    def __init__(self, check_every_gpu: int = 20):
        self.check_every_gpu = check_every_gpu
        self._first_bad: torch.Tensor | None = None  # () int64 on the device, -1 while all losses are finite
        self._bad_loss: torch.Tensor | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        loss = loss.detach()
        if loss.device.type == "cpu":  # reading a CPU scalar costs no sync: check it on the host, no kernels
            if not math.isfinite(value := float(loss)):
                raise Diverged(trainer.global_step, value)
            return
        if self._first_bad is None or self._first_bad.device != loss.device:
            self._first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._bad_loss = torch.zeros((), dtype=loss.dtype, device=loss.device)
        record_divergence_(self._first_bad, self._bad_loss, loss, trainer.global_step)
        if trainer.global_step % self.check_every_gpu == 0:
            self._raise_if_bad()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._raise_if_bad()

    def _raise_if_bad(self) -> None:
        if self._first_bad is not None and int(self._first_bad) >= 0:
            raise Diverged(int(self._first_bad), float(self._bad_loss))
