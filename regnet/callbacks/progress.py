"""Training progress that reads well where it is shown: a bar in a terminal, lines in a log.

In a terminal (stdout a TTY) or a notebook, Lightning's TQDM bar. Anywhere else (stdout redirected to a file, a
SLURM job's log, a pipe) a bar is hundreds of carriage-return frames per epoch in one unreadable line, so
:class:`LineProgress` prints instead a line every ``every_n_steps`` training steps and one per epoch with its
metrics (and one with the test metrics):

    [regnet] epoch 1/250 step 500/150000 (batch 500/600) 412.3 steps/s
    [regnet] epoch 1/250 done: step 600 after 1.5 s · train/loss 0.3121 · train/acc 0.9042 · val/acc 0.9655
    [regnet] test: test/loss 0.0412 · test/acc 0.9871

``callbacks.progress_bar.interactive=true|false`` forces either; ``callbacks.progress_bar.refresh_rate=0`` shows
neither.
"""

from __future__ import annotations

import sys
import time

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar

#: epoch-level metrics an epoch line shows, in this order, when the run logged them
EPOCH_METRICS = ("train/loss", "train/acc", "val/loss", "val/acc")
TEST_METRICS = ("test/loss", "test/acc", "test/err")


def progress_bar(refresh_rate: int = 20, every_n_steps: int = 500, interactive: bool | None = None) -> ProgressBar:
    """The progress callback for this process: TQDM (``refresh_rate``) when stdout is a terminal or a notebook
    (or ``interactive=True``), else :class:`LineProgress` (``every_n_steps``); ``refresh_rate=0``: none."""
    if refresh_rate == 0:
        return TQDMProgressBar(refresh_rate=0)  # a disabled bar, so Lightning adds none of its own
    if interactive is None:
        interactive = sys.stdout.isatty() or "ipykernel" in sys.modules
    return TQDMProgressBar(refresh_rate=refresh_rate) if interactive else LineProgress(every_n_steps)


class LineProgress(ProgressBar):
    """A line every ``every_n_steps`` training steps (0: none), one per epoch and one for the test, on stdout."""

    def __init__(self, every_n_steps: int = 500):
        super().__init__()
        if every_n_steps < 0:
            raise ValueError(f"callbacks.progress_bar.every_n_steps={every_n_steps} is invalid: use ≥ 0")
        self.every_n_steps = every_n_steps
        self._enabled = True
        self._epoch_start = self._clock = 0.0
        self._steps_at = 0
        self._pending: tuple[int, int, float] | None = None  # an epoch whose line waits for its train metrics

    # --- ProgressBar API ------------------------------------------------------------------------------
    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if not trainer.is_global_zero:
            self.disable()

    # --- lines ----------------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        if self.is_enabled:
            print(f"[regnet] {text}", flush=True)

    def _epoch(self, trainer: L.Trainer) -> str:
        return f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}" if trainer.max_epochs else "epoch"

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush_epoch(trainer)
        self._epoch_start = self._clock = time.perf_counter()
        self._steps_at = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not self.every_n_steps or trainer.global_step % self.every_n_steps or trainer.global_step == self._steps_at:
            return
        now = time.perf_counter()
        rate = (trainer.global_step - self._steps_at) / max(now - self._clock, 1e-9)
        self._clock, self._steps_at = now, trainer.global_step
        per_epoch = self.total_train_batches if self.total_train_batches != float("inf") else None
        if trainer.max_steps and trainer.max_steps > 0:
            total = f"/{trainer.max_steps}"
        else:
            total = f"/{int(per_epoch) * trainer.max_epochs}" if per_epoch and trainer.max_epochs else ""
        batches = f"{batch_idx + 1}/{int(per_epoch)}" if per_epoch else f"{batch_idx + 1}"
        self._say(f"{self._epoch(trainer)} step {trainer.global_step}{total} (batch {batches}) {rate:.1f} steps/s")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the module logs the epoch's training metrics after this hook: the line waits for them
        self._pending = (trainer.current_epoch, trainer.global_step, time.perf_counter() - self._epoch_start)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush_epoch(trainer)

    def _flush_epoch(self, trainer: L.Trainer) -> None:
        if self._pending is None:
            return
        epoch, step, seconds = self._pending
        self._pending = None
        of = f"/{trainer.max_epochs}" if trainer.max_epochs else ""
        self._say(f"epoch {epoch + 1}{of} done: step {step} after {seconds:.1f} s" + _metrics(trainer, EPOCH_METRICS))

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._say("test:" + _metrics(trainer, TEST_METRICS).removeprefix(" ·"))


def _metrics(trainer: L.Trainer, names: tuple[str, ...]) -> str:
    metrics = trainer.callback_metrics
    return "".join(f" · {k} {float(metrics[k]):.4f}" for k in names if k in metrics)
