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
from regnet.regularizers.base import Regularizer, check_positive, is_sparse, member_weight_matrices, weight_matrices


def projectable_matrices(module: nn.Module) -> list[tuple[str, nn.Module, Tensor]]:
    """``weight_matrices(module)``, each a view of its layer's weight; one-line ``ValueError`` on a sparse layer."""
    check_projectable(module)
    return weight_matrices(module, "reg.svb")


def check_projectable(module: nn.Module) -> list[tuple[str, nn.Module, Tensor]]:
    """``member_weight_matrices(module)`` (S, out, in·k·k), views; one-line ``ValueError`` on a sparse layer."""
    matrices = member_weight_matrices(module, "reg.svb")
    for name, m, _ in matrices:
        if is_sparse(m):
            raise ValueError(
                f"reg.svb cannot bound the singular values of {name} (SparseConv2d, a convolution with fixed "
                "unconnected kernels): the projection would connect them; use reg=soft_svb, or another model"
            )
    return matrices


@torch.no_grad()
def project_members_(module: nn.Module, eps, due: list[int] | None = None) -> dict[int, str]:
    """Clip the singular values of every weight matrix of the members ``due`` (all if None) into
    [1/(1+ε_s), 1+ε_s], in place (Jia et al. 2017, Algorithm 1); ``eps`` a float, or a stack's (S,) float64.
    Returns {member: its first weight with NaN/Inf entries} for the due members whose weights are not finite
    (left as they are: their run has diverged)."""
    matrices = check_projectable(module)  # each (S, out, in·k·k); S = 1 for an ordinary model
    size = matrices[0][2].shape[0] if matrices else 1
    eps = torch.as_tensor(eps, dtype=torch.float64).reshape(-1).tolist()
    bad = {}
    for s in range(size) if due is None else due:
        bad_name = next((n or "weight" for n, _, w in matrices if not bool(torch.isfinite(w[s]).all())), None)
        if bad_name is not None:
            bad[s] = bad_name
            continue
        e = eps[s] if len(eps) > 1 else eps[0]
        for _, _, w in matrices:
            u, sv, vh = robust_svd(w[s].float())  # w[s]: (out, in·k·k)
            sv = sv.clamp(1.0 / (1.0 + e), 1.0 + e)
            w[s].copy_(((u * sv) @ vh).to(w.dtype))
    return bad


def svb_project_(module: nn.Module, eps: float) -> None:
    """Clip the singular values of every Conv/Linear weight of ``module`` into [1/(1+eps), 1+eps], in place."""
    check_positive("eps", eps, allow_zero=False)
    bad = project_members_(module, eps)
    if bad:
        raise FloatingPointError(f"{bad[min(bad)]} has NaN/Inf entries: its singular values cannot be bounded")


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
    """An ordinary run's projection (``SVB.after_step``), after every optimizer step (when
    ``trainer.global_step`` has advanced); on other batches the weights are untouched."""

    def __init__(self, eps: float, every: int):
        self.svb = SVB(eps, every, orthogonal_init=False)
        self.eps, self.every = self.svb.eps, self.svb.every
        self._last_step = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step != self._last_step and self.svb.after_step(pl_module.model, step):
            raise Diverged(step, float("nan"))  # the step overflowed the weights: the run has diverged
        self._last_step = step

    def on_train_start(self, trainer, pl_module) -> None:
        self._last_step = trainer.global_step


class SVB(Regularizer):
    """Orthogonal init at setup, then the projection (``svb_project_``, bound 1 + ``eps``) every ``every`` steps."""

    name = "svb"
    per_member = ("eps", "every")

    def __init__(self, eps: float = 0.05, every: int = 600, orthogonal_init: bool = True):
        self.eps = check_positive("reg.svb.eps", eps, allow_zero=False)
        if not isinstance(every, int) or every <= 0:
            raise ValueError(f"reg.svb.every={every!r} is invalid: it must be a positive number of optimizer steps")
        self.every = every
        self.orthogonal_init = orthogonal_init

    def setup(self, model: nn.Module) -> None:
        """Refuse a model SVB cannot bound (one line), then start it from the orthogonal init."""
        check_projectable(model)
        if self.orthogonal_init:
            orthogonal_init_(model)

    def after_step(self, model: nn.Module, step: int, alive=None) -> list[int]:
        """Project the members whose ``every`` divides ``step``; returns those whose weights were not finite."""
        every = torch.as_tensor(self.every).reshape(-1).tolist()
        users = [0] if self.users is None else self.users
        due = [s for s in users if step % int(every[s] if len(every) > 1 else every[0]) == 0]
        due = [s for s in due if alive is None or bool(alive[s])]
        return sorted(project_members_(model, self.eps, due)) if due else []

    def to_(self, device) -> SVB:
        return self  # ε and ``every`` stay on the host: read there after every step, with no device sync

    def callbacks(self) -> list[L.Callback]:
        return [SVBCallback(self.eps, self.every)]
