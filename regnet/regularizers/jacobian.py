"""Jacobian regularization (Hoffman, Roberts & Yaida 2019, "Robust Learning with Jacobian Regularization").

For logits z = f(x) ∈ R^C the penalty is λ/2 · E_batch ‖J(x)‖²_F with J = ∂z/∂x (their Eq. 3 and Algorithm 1).
‖J‖²_F is estimated with random projections (their Eq. 5 / Algorithm 1):

    ‖J‖²_F ≈ C / n_proj · Σ_{k=1..n_proj} ‖ v_kᵀ J ‖²,   v_k uniform on the unit sphere S^{C-1},

computed per sample with one backward pass per projection: v_kᵀ J = ∂(v_k · z)/∂x. With ``n_proj = -1``
the C standard basis vectors are used instead, which gives ‖J‖²_F exactly (C backward passes).

The backward passes use ``create_graph=True`` so the penalty has a gradient w.r.t. the weights (double
backprop). The reference study computed it on a detached tensor, which trained nothing.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from regnet.regularizers.base import ONE, Members, Regularizer, check_positive, per_member


def jacobian_penalty(
    inputs: Tensor, logits: Tensor, n_proj: int = 1, members: Members | None = None, users: list[int] | None = None
) -> Tensor:
    """½ · mean over the batch of ‖∂logits/∂inputs‖²_F, estimated (n_proj ≥ 1) or exact (n_proj = -1).

    inputs: (N, ...) with ``requires_grad``, the tensor ``logits`` was computed from.
    logits: (N, C), or (N, S, C) over a member axis (``members``; ``inputs`` then holds member s's input in the
    s-th block of its dim 1, as a stack's wide input (N, S·C, H, W) does), giving (S,): members are independent,
    so one ``autograd.grad`` gives every member's vᵀJ. Each member draws its projections from its own generator
    (``users``: the members that draw; the others get v = 0). Samples must not interact in the forward pass (no
    BatchNorm in train mode), otherwise the per-sample Jacobian includes cross-sample terms.
    Returns a differentiable scalar (or (S,)).
    """
    if n_proj == 0 or n_proj < -1:
        raise ValueError(f"n_proj={n_proj!r} is invalid: use a positive number of projections, or -1 for exact")
    if not inputs.requires_grad:
        raise ValueError("jacobian_penalty needs inputs with requires_grad=True (set before the forward pass)")
    plain = logits.dim() == 2
    if plain:
        logits, members = logits.unsqueeze(1), ONE
    n, S, c = logits.shape  # (N, S, C)
    if n_proj == -1:
        eye = torch.eye(c, device=logits.device, dtype=logits.dtype)
        projections = [eye[k].expand(n, S, c) for k in range(c)]
        scale = 1.0
    else:
        projections = []
        for _ in range(n_proj):
            v = members.randn((n, c), users, dim=1, like=logits)  # (N, S, C)
            projections.append(v / v.norm(dim=-1, keepdim=True).clamp_min(1e-30))  # uniform on S^{C-1}
        scale = c / n_proj
    total = logits.new_zeros(S)
    for v in projections:
        (grad,) = torch.autograd.grad(logits, inputs, grad_outputs=v, create_graph=True)  # (N, ...) = vᵀJ
        total = total + grad.reshape(n, S, -1).pow(2).sum(dim=(0, 2))
    total = 0.5 * scale * total / n
    return total.squeeze(0) if plain else total


def jacobian_sq_norms(inputs: Tensor, logits: Tensor, create_graph: bool = False) -> Tensor:
    """Exact per-sample ‖J(x_n)‖²_F = Σ_c ‖∂z_{n,c}/∂x_n‖² (Hoffman 2019, Sec. 2), shape (N,): one backward
    pass per class. ``inputs`` (N, ...) with ``requires_grad``, ``logits`` (N, C) computed from them, samples
    not interacting (as for :func:`jacobian_penalty`). ``create_graph=True`` keeps it differentiable."""
    c = logits.shape[1]
    total = logits.new_zeros(logits.shape[0])
    for k in range(c):
        (grad,) = torch.autograd.grad(logits[:, k].sum(), inputs, retain_graph=create_graph or k < c - 1,
                                      create_graph=create_graph)  # fmt: skip
        total = total + grad.flatten(1).pow(2).sum(1)
    return total


class Jacobian(Regularizer):
    """Adds ``lam · jacobian_penalty(x, z, n_proj)`` = λ/2 · ‖J‖²_F (Hoffman 2019, Eq. 3) to the loss."""

    name = "jacobian"
    needs_input_grad = True
    per_member = ("lam",)
    shared = ("n_proj",)  # one set of backward passes serves every member

    def __init__(self, lam: float = 0.01, n_proj: int = 1):
        self.lam = check_positive("reg.jacobian.lam", lam)
        if not isinstance(n_proj, int) or n_proj == 0 or n_proj < -1:
            raise ValueError(
                f"reg.jacobian.n_proj={n_proj!r} is invalid: use a positive integer, or -1 for the exact norm"
            )
        self.n_proj = n_proj

    def member_penalty(self, model: nn.Module, inputs: Tensor, logits: Tensor, targets, members: Members) -> Tensor:
        value = jacobian_penalty(inputs, logits, self.n_proj, members, self.users)  # (S,)
        return per_member(self.lam, value) * value
