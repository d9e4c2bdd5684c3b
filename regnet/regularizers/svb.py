"""Singular value bounding (Jia, Tao, Gao & Xu 2017, "Improving training of deep neural networks via
Singular Value Bounding", Algorithm 1).

Every ``every`` optimizer steps, each Conv/Linear weight W (a conv reshaped to out × in·k·k) is replaced by
U · clip(Σ, 1/(1+ε), 1+ε) · Vᵀ, so all its singular values lie in [1/(1+ε), 1 + ε]. Models start from an
orthogonal initialisation (all singular values 1), as in the paper and the seed-000 study.
"""

from __future__ import annotations

import lightning as L
import scipy.linalg
import torch
from torch import Tensor, nn

from regnet.errors import Diverged
from regnet.regularizers.base import Regularizer, check_positive, weight_matrices


@torch.no_grad()
def svb_project_(module: nn.Module, eps: float) -> None:
    """Clip the singular values of every Conv/Linear weight of ``module`` into [1/(1+eps), 1+eps], in place."""
    check_positive("eps", eps, allow_zero=False)
    for name, _, w in weight_matrices(module):
        if not bool(torch.isfinite(w).all()):
            raise FloatingPointError(f"{name or 'weight'} has NaN/Inf entries: its singular values cannot be bounded")
        u, s, vh = robust_svd(w.float())  # w: (out, in·k·k)
        s = s.clamp(1.0 / (1.0 + eps), 1.0 + eps)
        w.copy_(((u * s) @ vh).to(w.dtype))


def robust_svd(w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Thin SVD of a finite matrix. ``torch.linalg.svd`` (LAPACK gesdd on the CPU) can fail to converge on
    matrices with many nearly equal singular values — what SVB produces; then retry in float64, and last with
    LAPACK's slower but always-converging QR-iteration driver (gesvd, through SciPy)."""
    try:
        return torch.linalg.svd(w, full_matrices=False)
    except torch.linalg.LinAlgError:
        pass
    try:
        return tuple(t.to(w.dtype) for t in torch.linalg.svd(w.double(), full_matrices=False))
    except torch.linalg.LinAlgError:
        pass
    return svd_gesvd(w)


def svd_gesvd(w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Thin SVD through LAPACK gesvd (QR iteration), in float64 on the CPU; returned in w's dtype and device."""
    u, s, vh = scipy.linalg.svd(w.detach().double().cpu().numpy(), full_matrices=False, lapack_driver="gesvd")
    return tuple(torch.from_numpy(t).to(w.device, w.dtype) for t in (u, s, vh))


@torch.no_grad()
def orthogonal_init_(module: nn.Module) -> None:
    """Orthogonal init of every Conv/Linear weight (conv as out × in·k·k), biases to zero."""
    for _, m, w in weight_matrices(module):
        nn.init.orthogonal_(w)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class SVBCallback(L.Callback):
    """Projects after every ``every``-th optimizer step (when ``trainer.global_step`` has advanced to a
    multiple of ``every``); on other batches the weights are untouched."""

    def __init__(self, eps: float, every: int):
        self.eps = eps
        self.every = every
        self._last_step = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step != self._last_step and step % self.every == 0:
            try:
                svb_project_(pl_module.model, self.eps)
            except FloatingPointError as err:  # the step overflowed the weights: the run has diverged
                raise Diverged(step, float("nan")) from err
        self._last_step = step

    def on_train_start(self, trainer, pl_module) -> None:
        self._last_step = trainer.global_step


class SVB(Regularizer):
    name = "svb"

    def __init__(self, eps: float = 0.05, every: int = 600, orthogonal_init: bool = True):
        self.eps = check_positive("reg.svb.eps", eps, allow_zero=False)
        if not isinstance(every, int) or every <= 0:
            raise ValueError(f"reg.svb.every={every!r} is invalid: it must be a positive number of optimizer steps")
        self.every = every
        self.orthogonal_init = orthogonal_init

    def setup(self, model: nn.Module) -> None:
        if self.orthogonal_init:
            orthogonal_init_(model)

    def callbacks(self) -> list[L.Callback]:
        return [SVBCallback(self.eps, self.every)]
