"""Robust accuracy on the validation split, measured once, at the end of training: ``val/pgd_acc``.

L∞ PGD (Madry et al. 2018, Eq. 2: x ← Π_{x₀+S}(x + α·sign(∇ₓ L(θ, x, y))), S the ε-ball), in pixel units: the
attack moves images in [0, 1] and the model sees them through the run's normalisation, as ``regnet.analyze
--attacks`` does. It starts at a random point of the ball (fixed seed) and takes ``steps`` steps of size α (by
default 2.5·ε/steps). An image counts as robust only if the model classifies it right clean and at every iterate,
so ``val/pgd_acc`` ≤ ``val/acc``, with equality at ε = 0. A search over a regularizer's strength can maximise it
(``hparams_search=jacobian_lam_pgd``): the robustness a regularizer promises, chosen without the test set.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor


class ValidationPGD(L.Callback):
    def __init__(
        self,
        eps: float = 0.1,
        steps: int = 10,
        alpha: float | None = None,
        max_images: int = 1000,
        name: str = "pgd_acc",
        seed: int = 0,
    ):
        if eps < 0 or steps < 1 or max_images < 1:
            raise ValueError(
                f"callbacks val_pgd: eps={eps}, steps={steps}, max_images={max_images} are invalid "
                "(need eps ≥ 0, steps ≥ 1, max_images ≥ 1)"
            )
        self.eps, self.steps, self.max_images, self.name, self.seed = eps, steps, max_images, name, seed
        self.alpha = alpha if alpha is not None else 2.5 * eps / steps

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if "val" not in getattr(trainer.datamodule, "splits", {}):
            raise ValueError(f"val/{self.name} needs a validation split: set data.val_fraction (e.g. 0.1)")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not last_epoch(trainer):
            return
        images, labels = trainer.datamodule.splits["val"]
        images, labels = images[: self.max_images], labels[: self.max_images]
        mean, std = (torch.tensor(trainer.datamodule.pixel_stats[k], device=images.device).view(1, -1, 1, 1)
                     for k in ("mean", "std"))  # fmt: skip
        model = pl_module.model
        generator = torch.Generator(device=images.device).manual_seed(self.seed)
        robust = 0
        with torch.inference_mode(False), torch.enable_grad():  # validation runs under inference mode
            for start in range(0, len(labels), trainer.datamodule.eval_batch_size):
                x = images[start : start + trainer.datamodule.eval_batch_size].float() / 255.0
                y = labels[start : start + trainer.datamodule.eval_batch_size]
                robust += int(self.robust(lambda p: model((p - mean) / std), x, y, generator).sum())
        pl_module.log(f"val/{self.name}", robust / len(labels), sync_dist=True)

    def robust(self, model, x: Tensor, y: Tensor, generator: torch.Generator) -> Tensor:
        """(N,) bool: classified right at x and at every PGD iterate in the ε-ball around it (pixels in [0, 1])."""
        with torch.no_grad():
            ok = model(x).argmax(1) == y
        if self.eps == 0:
            return ok
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
        adv = (x + self.eps * noise).clamp(0, 1)
        for _ in range(self.steps):
            adv = adv.detach().requires_grad_(True)
            logits = model(adv)
            ok &= logits.detach().argmax(1) == y
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, y), adv)
            adv = torch.min(torch.max(adv.detach() + self.alpha * grad.sign(), x - self.eps), x + self.eps).clamp(0, 1)
        with torch.no_grad():
            return ok & (model(adv).argmax(1) == y)


def last_epoch(trainer: L.Trainer) -> bool:
    """Whether this validation is the last of training (its last epoch, or its last step for a step limit)."""
    if trainer.max_steps is not None and trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
        return True
    return trainer.max_epochs is not None and trainer.max_epochs > 0 and trainer.current_epoch + 1 >= trainer.max_epochs
