"""Singular value bounding (Jia, Tao, Gao & Xu 2017, "Improving training of deep neural networks via
Singular Value Bounding", Algorithm 1).

Every ``every`` optimizer steps, each Conv/Linear weight W (a conv reshaped to out × in·k·k) is replaced by
U · clip(Σ, 1/(1+ε), 1+ε) · Vᵀ, so all its singular values lie in [1/(1+ε), 1 + ε] (Algorithm 1).
Models start from an orthogonal initialisation (all singular values 1; ``regnet.models.init.orthogonal_init_``),
as in the paper and the ``hoffman2019_mnist`` study.

The layers are ``weight_matrices``'s. A sparse layer (LeNet-5's ``SparseConv2d``, ``model=lenet5``) is refused
with one line, at setup: clipping the singular values of its masked weight would fill in the connections its
mask keeps at zero (and re-masking would move the singular values out of the band again), so no projection keeps
both promises. ``reg=soft_svb`` covers it (its penalty is on ``weight · mask`` and leaves the mask's zeros at 0).
"""

from __future__ import annotations

import lightning as L
import scipy.linalg
import torch
from torch import Tensor, nn

from regnet.errors import Diverged
from regnet.models.init import orthogonal_init_
from regnet.models.lenet5 import SparseConv2d
from regnet.regularizers.base import Regularizer, check_positive, weight_matrices


def projectable_matrices(module: nn.Module) -> list[tuple[str, nn.Module, Tensor]]:
    """``weight_matrices(module)``, each a view of its layer's weight; one-line ``ValueError`` on a sparse layer."""
    matrices = weight_matrices(module, "reg.svb")
    for name, m, _ in matrices:
        if isinstance(m, SparseConv2d):
            raise ValueError(
                f"reg.svb cannot bound the singular values of {name} (SparseConv2d, a convolution with fixed "
                "unconnected kernels): the projection would connect them; use reg=soft_svb, or another model"
            )
    return matrices


@torch.no_grad()
def svb_project_(module: nn.Module, eps: float) -> None:
    """Clip the singular values of every Conv/Linear weight of ``module`` into [1/(1+eps), 1+eps], in place."""
    check_positive("eps", eps, allow_zero=False)
    for name, _, w in projectable_matrices(module):
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
    """Orthogonal init at setup, then the projection (``svb_project_``, bound 1 + ``eps``) every ``every`` steps."""

    name = "svb"

    def __init__(self, eps: float = 0.05, every: int = 600, orthogonal_init: bool = True):
        self.eps = check_positive("reg.svb.eps", eps, allow_zero=False)
        if not isinstance(every, int) or every <= 0:
            raise ValueError(f"reg.svb.every={every!r} is invalid: it must be a positive number of optimizer steps")
        self.every = every
        self.orthogonal_init = orthogonal_init

    def setup(self, model: nn.Module) -> None:
        """Refuse a model SVB cannot bound (one line), then start it from the orthogonal init."""
        projectable_matrices(model)
        if self.orthogonal_init:
            orthogonal_init_(model)

    def callbacks(self) -> list[L.Callback]:
        return [SVBCallback(self.eps, self.every)]
