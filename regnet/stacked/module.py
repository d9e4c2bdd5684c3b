"""The LightningModule of a stack: the wide model (regnet/stacked/layers.py), each member's loss and
regularizers (``regnet/losses`` and ``regnet/regularizers``, over the member axis), per-member metrics,
divergence isolation.

``training_step`` is ``RegNetModule.training_step`` for S members at once, calling the same loss and hooks: the
returned loss is the sum of the members' losses, so each member's gradient is that of its own loss (members share
no parameter).
Per-member weight decay and gradient clipping happen in ``on_before_optimizer_step`` (clipping first, then
``grad += wd·w``, the order ``torch.optim.SGD``/``Adam`` apply a Trainer's clipping and their own decay).

A member whose loss stops being finite is *frozen*: its loss leaves the sum, its gradients are zeroed, and
after the host notices (every step on the CPU, every ``check_every_gpu`` steps on a GPU, as DivergenceCheck)
its parameters and buffers are restored after every step from a snapshot; its first bad step is recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import lightning as L
import torch
from torch import Tensor, nn

from regnet.callbacks.divergence import record_divergence_
from regnet.log import get_logger
from regnet.losses import get_loss
from regnet.metrics import STAGES, epoch_metrics, epoch_values, fill_counts
from regnet.regularizers.base import Members, Regularizer
from regnet.rng import rng_states, set_rng_states
from regnet.stacked.regularizers import has_penalty

log = get_logger(__name__)


class StackedModule(L.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        regs: Sequence[Regularizer],
        num_classes: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable | None,
        scheduler_interval: str,
        loss,
        generator_seeds: list[int],
        generator_states: list[Tensor | None],
        weight_decay: Tensor,
        clip_val: float | None = None,
        clip_algorithm: str = "norm",
        check_every_gpu: int = 20,
        top_k: tuple[int, ...] = (1, 5),
    ):
        super().__init__()
        self.model, self.regs, self.num_classes = model, list(regs), num_classes
        self.S = S = len(generator_seeds)
        self.loss_fn = get_loss(loss)
        self.needs_input_grad = any(r.needs_input_grad for r in self.regs)
        self.penalties = [r.name for r in self.regs if has_penalty(r)]  # logged as train/<name>
        #: which members use each penalty (on the host, and as a mask on the device)
        self.users = {r.name: set(r.users) for r in self.regs}
        for r in self.regs:
            uses = torch.tensor([s in self.users[r.name] for s in range(S)])
            self.register_buffer(f"uses__{r.name}", uses, persistent=False)
        self.optimizer_factory, self.scheduler_factory, self.scheduler_interval = (
            optimizer,
            scheduler,
            scheduler_interval,
        )
        self.clip_val, self.clip_algorithm, self.check_every_gpu = clip_val, clip_algorithm, check_every_gpu
        self._gen_seeds, self._gen_states = list(generator_seeds), list(generator_states)
        self._generators: list[torch.Generator] | None = None
        self.register_buffer("weight_decay", weight_decay.float().clone())
        self._any_weight_decay = bool(weight_decay.any())
        self.register_buffer("alive", torch.ones(S, dtype=torch.bool))
        self.register_buffer("first_bad", torch.full((S,), -1, dtype=torch.long))
        self.register_buffer("bad_loss", torch.zeros(S))
        self.topk = top_k  # RegNetModule.top_k: 1 and the configured k
        # regnet/metrics.py over the S members; loss sums in float64
        self.metrics, self.means = epoch_metrics(top_k, ["data_loss", "loss", *self.penalties], S, torch.float64)
        self._snapshot: dict[str, Tensor] | None = None
        self._step_ok: Tensor | None = None
        self._last_svb_step = -1

    # --- per-member random generators (input noise, weight noise, Jacobian projections) -------------------
    def generators(self) -> list[torch.Generator]:
        if self._generators is None:
            self._generators = []
            for seed, state in zip(self._gen_seeds, self._gen_states, strict=True):
                g = torch.Generator(device=self.device)
                if state is not None and (self.device.type == "cpu") == (state.numel() > 16):
                    g.set_state(state)
                else:  # a fresh CUDA run's global generator: manual_seed(seed)
                    g.manual_seed(seed)
                self._generators.append(g)
        return self._generators

    # --- training ---------------------------------------------------------------------------------------
    def wide_input(self, x: Tensor) -> Tensor:
        """(N, S, C, H, W) → (N, S·C, H, W): member s's channels are block s."""
        return x.reshape(x.shape[0], -1, *x.shape[3:])

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch  # x: (N, S, C, H, W) normalised, y: (N, S)
        members = Members(self.S, self.generators())
        for reg in self.regs:
            x = reg.perturb(x, members)
        xw = self.wide_input(x)
        if self.needs_input_grad:
            xw = xw.detach().requires_grad_(True)
        out = next((o for r in self.regs if (o := r.train_forward(self.model, xw, members)) is not None), None)
        logits = (self.model(xw) if out is None else out).view(len(y), self.S, -1)  # (N, S, K)
        data_loss = self.loss_fn(logits, y)  # (S,)
        loss = data_loss
        means = self.means["train_means"]
        for reg in self.regs:
            value = reg.member_penalty(self.model, xw, logits, y, members)  # (S,)
            if value is not None:
                loss = loss + torch.where(getattr(self, f"uses__{reg.name}"), value, torch.zeros_like(value))
                means[reg.name].update(value, len(y))
        means["data_loss"].update(data_loss, len(y))
        means["loss"].update(loss, len(y))
        self.metrics["train_metrics"].update(logits, y)
        record_divergence_(self.first_bad, self.bad_loss, loss.detach(), self.global_step + 1)  # as DivergenceCheck
        self._step_ok = self.alive & torch.isfinite(loss.detach())
        return torch.where(self._step_ok, loss, torch.zeros_like(loss)).sum()

    def on_before_optimizer_step(self, optimizer) -> None:
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self._step_ok is not None:
            for p in params:
                p.grad.masked_fill_(~self._step_ok.view(-1, *([1] * (p.dim() - 1))), 0.0)
        if self.clip_val:
            if self.clip_algorithm == "value":
                for p in params:
                    p.grad.clamp_(-self.clip_val, self.clip_val)
            else:  # torch.nn.utils.clip_grad_norm_, per member
                norms = torch.stack([p.grad.flatten(1).norm(dim=1) for p in params]).norm(dim=0)  # (S,)
                coef = (self.clip_val / (norms + 1e-6)).clamp(max=1.0)
                for p in params:
                    p.grad.mul_(coef.view(-1, *([1] * (p.dim() - 1))).to(p.grad.dtype))
        if self._any_weight_decay:
            for p in params:
                p.grad.add_(p.detach() * self.weight_decay.view(-1, *([1] * (p.dim() - 1))).to(p.dtype))

    def optimizer_step(self, *args, **kwargs) -> None:
        """The step, then what follows it (before any callback's ``on_train_batch_end``, so a checkpoint saved
        there already holds the projected, frozen-restored weights)."""
        super().optimizer_step(*args, **kwargs)
        self._after_step()

    def _after_step(self) -> None:
        step = self.global_step + 1  # Lightning counts the step as completed only after this hook returns
        if self._snapshot is not None:
            self._restore_frozen()
        if step != self._last_svb_step:  # e.g. SVB's projection (Jia et al. 2017), for the members due
            for s in (s for reg in self.regs for s in reg.after_step(self.model, step, self.alive)):
                if int(self.first_bad[s]) < 0:
                    self.first_bad[s] = step
                    self.bad_loss[s] = float("nan")
            self._last_svb_step = step
        every = 1 if self.device.type == "cpu" else self.check_every_gpu
        if step % every == 0:
            self.check_divergence()

    def on_train_epoch_end(self) -> None:
        self.check_divergence()
        self._log_epoch("train")

    def check_divergence(self) -> list[int]:
        """Freeze the members found diverged since the last check (one host sync); returns them."""
        newly = ((self.first_bad >= 0) & self.alive).nonzero().flatten().tolist()
        if not newly:
            return []
        state = self.model.state_dict()
        if self._snapshot is None:
            self._snapshot = {k: v.detach().clone() for k, v in state.items()}
        for s in newly:
            self.alive[s] = False
            for k, v in state.items():
                self._snapshot[k][s] = v[s]
            log.warning(
                f"stack member {s} diverged at step {int(self.first_bad[s])} (loss "
                f"{float(self.bad_loss[s])}): frozen, the others train on"
            )
        if not bool(self.alive.any()) and self._trainer is not None:
            self.trainer.should_stop = True
        return newly

    @torch.no_grad()
    def _restore_frozen(self) -> None:
        frozen = ~self.alive
        for k, v in self.model.state_dict().items():
            v.copy_(torch.where(frozen.view(-1, *([1] * (v.dim() - 1))), self._snapshot[k], v))

    # --- evaluation: every member sees the same batch ------------------------------------------------------
    def validation_step(self, batch, batch_idx) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch, batch_idx) -> None:
        self._eval_step("test", batch)

    def _eval_step(self, stage: str, batch) -> None:
        x, y = batch  # (B, C, H, W), (B,)
        logits = self.model(x.repeat(1, self.S, 1, 1) if x.dim() == 4 else x.repeat(1, self.S)).view(len(y), self.S, -1)
        ys = y.unsqueeze(1).expand(-1, self.S)
        self.means[f"{stage}_means"]["loss"].update(self.loss_fn(logits, ys), len(y))
        self.metrics[f"{stage}_metrics"].update(logits, ys)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def _log_epoch(self, stage: str) -> None:
        """Log ``m<s>/<stage>/<name>`` for every member (the names RegNetModule logs; a penalty only for the members
        that use it) and reset the stage's metrics."""
        values = epoch_values(self.metrics[f"{stage}_metrics"], self.means[f"{stage}_means"])
        if not values:
            return
        used = {name: range(self.S) if name not in self.users else self.users[name] for name in values}
        self.log_dict({f"m{s}/{stage}/{name}": v[s].float() for name, v in values.items() for s in used[name]})

    # --- checkpoints: RNG states, the members' generators and the frozen snapshot travel with them -----------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["regnet_rng"] = rng_states()
        checkpoint["member_generators"] = [g.get_state() for g in self.generators()]
        checkpoint["frozen_snapshot"] = self._snapshot
        checkpoint["last_svb_step"] = self._last_svb_step

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "regnet_rng" in checkpoint:
            set_rng_states(checkpoint["regnet_rng"])
        if (state := checkpoint.get("state_dict")) is not None:
            fill_counts(state, self.state_dict(), self._old_counts(state))
        self._gen_states = list(checkpoint.get("member_generators", self._gen_states))
        self._generators = None
        self._snapshot = checkpoint.get("frozen_snapshot")
        self._last_svb_step = checkpoint.get("last_svb_step", -1)

    def _old_counts(self, state: dict) -> dict[str, Tensor]:
        """The training sums of a checkpoint written before regnet/metrics.py (buffers ``train__count``,
        ``train__correct<k>``, ``train__<mean>``; validation's and test's are dropped), in today's layout."""
        old = {k: state.pop(k) for k in list(state) if k.partition("__")[0] in STAGES and "__" in k}
        if "train__count" not in old or any(f"train__correct{k}" not in old for k in self.topk):
            return {}
        found = {"metrics.train_metrics.count": old["train__count"]}
        found["metrics.train_metrics.correct"] = torch.stack([old[f"train__correct{k}"] for k in self.topk], -1)
        for name in (name for name in self.means["train_means"] if f"train__{name}" in old):
            found[f"means.train_means.{name}.total"] = old[f"train__{name}"]
            found[f"means.train_means.{name}.count"] = old["train__count"]
        return found

    def on_fit_start(self) -> None:
        for reg in self.regs:
            reg.to_(self.device)
        if self._snapshot is not None:
            self._snapshot = {k: v.to(self.device) for k, v in self._snapshot.items()}

    # --- optimisation: one optimizer over the wide parameters (elementwise updates are per member) ----------
    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.model.parameters())
        if self.scheduler_factory is None:
            return optimizer
        total = (
            int(self.trainer.estimated_stepping_batches)
            if self.scheduler_interval == "step"
            else int(self.trainer.max_epochs)
        )
        scheduler = self.scheduler_factory(optimizer, total_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}


__all__ = ["StackedModule"]
