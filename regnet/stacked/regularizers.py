"""The regularizers of ``regnet/regularizers/`` for a stack: one object per kind over all S members, each
member with its own coefficient (0 where the member does not use it), so members may differ in λ, β, ε, σ,
weight decay and in SVB's ε and ``every``, and in which regularizers they use at all.

Penalties return one value per member, ``(S,)``, computed from the wide model (regnet/stacked/layers.py) with
the same formula as the separate regularizer (cited there). Random draws (input noise, weight noise, the
Jacobian's projections) come from each member's own generator, in the order a separate run draws them from
the global one, so a member sees the same noise and projections as its separate run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from regnet.regularizers.confidence_penalty import ConfidencePenalty
from regnet.regularizers.elastic import Elastic
from regnet.regularizers.input_noise import InputNoise
from regnet.regularizers.jacobian import Jacobian
from regnet.regularizers.l1 import L1
from regnet.regularizers.l2 import L2
from regnet.regularizers.label_smoothing import LabelSmoothing
from regnet.regularizers.none import NoRegularizer
from regnet.regularizers.soft_svb import SoftSVB
from regnet.regularizers.svb import SVB, robust_svd
from regnet.regularizers.weight_noise import WeightNoise
from regnet.stacked.layers import StackedSparseConv2d

#: regularizer class → (its per-member scalar attribute, or None) ; SVB's are (eps, every)
PENALTY_SCALAR = {
    L1: "lam",
    Elastic: "l1",
    SoftSVB: "lam",
    ConfidencePenalty: "beta",
    LabelSmoothing: "eps",
    Jacobian: "lam",
}
STACKABLE = (NoRegularizer, L2, InputNoise, WeightNoise, SVB, *PENALTY_SCALAR)

#: settings that must agree among the members using a regularizer (everything else is a per-member scalar)
SHARED_SETTINGS = {"jacobian": ("n_proj",)}


def penalised(wide: nn.Module) -> list[tuple[str, Tensor]]:
    """The wide model's weights of Conv/Linear/sparse layers (≥ 2-D in each member; ``base.weight_layers``, the
    weights weight noise perturbs): (name, (S, ...))."""
    return [(n, p) for n, p in wide.named_parameters() if p.dim() >= 3]


def weight_matrices(wide: nn.Module) -> list[Tensor]:
    """Each member's weight matrices ``(S, out, in·k·k)`` as ``base.weight_matrices`` sees them: Conv/Linear
    weights, and LeNet-5's sparse convolution as ``weight · mask``."""
    out = []
    for m in wide.modules():
        if isinstance(m, StackedSparseConv2d):
            w = m.weight * m.mask
            out.append(w.view(w.shape[0], w.shape[1], -1))
        elif getattr(m, "svb", False):
            out.append(m.weight.view(m.weight.shape[0], m.weight.shape[1], -1))
    return out


def svb_weights(wide: nn.Module) -> list[tuple[str, Tensor]]:
    """Each member's Conv/Linear weight as matrices ``(S, out, in·k·k)`` (``base.weight_matrices``), views."""
    return [
        (n, m.weight.view(m.weight.shape[0], m.weight.shape[1], -1))
        for n, m in wide.named_modules()
        if getattr(m, "svb", False)
    ]


class MemberRegs:
    """Every member's regularizers as per-member tensors on the training device."""

    def __init__(self, member_regs: list[list], device: torch.device | str = "cpu"):
        S = self.S = len(member_regs)
        for regs in member_regs:
            for r in regs:
                if not isinstance(r, STACKABLE):
                    raise ValueError(f"regularizer {r.name} ({type(r).__name__}) has no stacked version")
        self.member_regs = member_regs
        z = lambda: torch.zeros(S)  # noqa: E731
        self.weight_decay = torch.tensor([sum(r.weight_decay for r in regs) for regs in member_regs])
        self.input_sigma, self.weight_sigma, self.svb_eps = z(), z(), z()
        self.svb_every = torch.zeros(S, dtype=torch.long)
        self.penalties: dict[str, tuple[type, Tensor]] = {}  # name → (class, coefficients (S,))
        self.order: list[list[str]] = [[] for _ in range(S)]  # each member's penalty names, in its config order
        self.n_proj = None
        for s, regs in enumerate(member_regs):
            for r in regs:
                if isinstance(r, InputNoise):
                    self.input_sigma[s] = r.sigma
                elif isinstance(r, WeightNoise):
                    self.weight_sigma[s] = r.sigma
                elif isinstance(r, SVB):
                    self.svb_eps[s], self.svb_every[s] = r.eps, r.every
                elif type(r) in PENALTY_SCALAR:
                    cls, coef = self.penalties.setdefault(r.name, (type(r), z()))
                    coef[s] = float(getattr(r, PENALTY_SCALAR[type(r)]))
                    self.order[s].append(r.name)
                    if isinstance(r, Jacobian):
                        if self.n_proj is not None and self.n_proj != r.n_proj:
                            raise ValueError("members use different reg.jacobian.n_proj")
                        self.n_proj = r.n_proj
        self.uses = {name: torch.tensor([name in o for o in self.order]) for name in self.penalties}
        # which members draw noise, known on the host (no device sync per step)
        self.input_noisy = [s for s in range(S) if float(self.input_sigma[s]) > 0]
        self.weight_noisy = [s for s in range(S) if float(self.weight_sigma[s]) > 0]
        self.to(device)

    def to(self, device) -> MemberRegs:
        for k in ("weight_decay", "input_sigma", "weight_sigma", "svb_eps"):
            setattr(self, k, getattr(self, k).to(device))
        self.penalties = {n: (c, v.to(device)) for n, (c, v) in self.penalties.items()}
        return self

    @property
    def needs_input_grad(self) -> bool:
        return "jacobian" in self.penalties

    # --- inputs and forward -------------------------------------------------------------------------------
    def perturb_inputs(self, x: Tensor, generators: list[torch.Generator]) -> Tensor:
        """x (S, N, C, H, W): x_s + σ_s·ξ_s for the members with input noise (Bishop 1995)."""
        noisy = self.input_noisy
        if not noisy:
            return x
        noise = torch.zeros_like(x)
        for s in noisy:
            noise[s] = torch.randn(x.shape[1:], generator=generators[s], device=x.device, dtype=x.dtype)
        return x + self.input_sigma.to(x.dtype).view(-1, *([1] * (x.dim() - 1))) * noise

    def noisy_params(self, wide: nn.Module, generators: list[torch.Generator]) -> dict[str, Tensor] | None:
        """Weight noise (Graves 2011): w + σ_s·ξ for every ≥ 2-D weight of the members that use it; None if none."""
        noisy = self.weight_noisy
        if not noisy:
            return None
        weights = {n for n, _ in penalised(wide)}
        params = {}
        for name, p in wide.named_parameters():
            if name in weights:
                noise = torch.zeros_like(p)
                for s in noisy:
                    noise[s] = torch.randn(p.shape[1:], generator=generators[s], device=p.device, dtype=p.dtype)
                params[name] = p + self.weight_sigma.to(p.dtype).view(-1, *([1] * (p.dim() - 1))) * noise
            else:
                params[name] = p
        return params

    # --- penalties: name → (S,) already multiplied by each member's coefficient --------------------------
    def penalties_of(
        self, wide: nn.Module, x: Tensor, logits: Tensor, y: Tensor, generators: list[torch.Generator]
    ) -> dict[str, Tensor]:
        """x: the wide input (N, S·C, H, W) the logits (N, S, K) came from; y: (N, S)."""
        out = {}
        for name, (cls, coef) in self.penalties.items():
            if cls is Jacobian:
                value = self._jacobian(x, logits, generators)
            elif cls in (L1, Elastic):
                value = torch.stack([w.abs().flatten(1).sum(1) for w in weight_matrices(wide)]).sum(0)
            elif cls is SoftSVB:
                value = torch.stack([_orthogonality_gap(w) for w in weight_matrices(wide)]).sum(0)
            elif cls is ConfidencePenalty:
                log_p = F.log_softmax(logits.float(), dim=-1)
                value = (log_p.exp() * log_p).sum(-1).mean(0)  # −H, averaged over the batch
            elif cls is LabelSmoothing:
                log_p = F.log_softmax(logits.float(), dim=-1)  # (N, S, K)
                uniform = -log_p.mean(dim=-1)
                nll = -log_p.gather(-1, y.unsqueeze(-1)).squeeze(-1)
                value = (uniform - nll).mean(0)
            else:  # pragma: no cover
                raise AssertionError(cls)
            out[name] = coef.to(value.dtype) * value
        return out

    def _jacobian(self, x: Tensor, logits: Tensor, generators: list[torch.Generator]) -> Tensor:
        """½ · mean_batch ‖∂z_s/∂x_s‖²_F per member (Hoffman et al. 2019, Eq. 3 and 5, as jacobian_penalty):
        members are independent, so one ``autograd.grad`` over the wide input gives every member's vᵀJ."""
        n, S, c = logits.shape
        users = [s for s in range(S) if bool(self.uses["jacobian"][s])]
        if self.n_proj == -1:
            eye = torch.eye(c, device=logits.device, dtype=logits.dtype)
            projections, scale = [eye[k].expand(n, S, c) for k in range(c)], 1.0
        else:
            projections, scale = [], c / self.n_proj
            for _ in range(self.n_proj):
                v = torch.zeros_like(logits)
                for s in users:
                    vs = torch.randn(n, c, generator=generators[s], device=logits.device, dtype=logits.dtype)
                    v[:, s] = vs / vs.norm(dim=1, keepdim=True)
                projections.append(v)
        total = logits.new_zeros(S)
        for v in projections:
            (grad,) = torch.autograd.grad(logits, x, grad_outputs=v, create_graph=True)  # (N, S·C, H, W)
            total = total + grad.reshape(n, S, -1).pow(2).sum(dim=(0, 2))
        return 0.5 * scale * total / n

    # --- SVB: after the optimizer step ---------------------------------------------------------------------
    @torch.no_grad()
    def svb_project_(self, wide: nn.Module, step: int, alive: Tensor) -> list[int]:
        """Project the members whose SVB ``every`` divides ``step`` (Jia et al. 2017, Algorithm 1) with one
        batched SVD per weight; returns the members whose weights were not finite (they have diverged)."""
        due = [
            s
            for s in range(self.S)
            if int(self.svb_every[s]) > 0 and step % int(self.svb_every[s]) == 0 and bool(alive[s])
        ]
        if not due:
            return []
        weights = svb_weights(wide)
        bad = sorted({s for s in due for _, w in weights if not bool(torch.isfinite(w[s]).all())})
        due = [s for s in due if s not in bad]
        if not due:
            return bad
        idx = torch.tensor(due, device=self.svb_eps.device)
        eps = self.svb_eps[idx].view(-1, 1)
        for _, w in weights:
            m = w[idx].float()  # (D, out, in·k·k)
            try:
                u, sv, vh = torch.linalg.svd(m, full_matrices=False)
            except torch.linalg.LinAlgError:  # per matrix, with svb.robust_svd's fallbacks
                u, sv, vh = (torch.stack(t) for t in zip(*(robust_svd(mi) for mi in m)))
            sv = torch.minimum(torch.maximum(sv, 1.0 / (1.0 + eps)), 1.0 + eps)
            w[idx] = ((u * sv.unsqueeze(1)) @ vh).to(w.dtype)
        return bad


def _orthogonality_gap(w: Tensor) -> Tensor:
    """``soft_svb.orthogonality_gap`` per member: w (S, out, in·k·k) → (S,)."""
    gram = w @ w.transpose(1, 2) if w.shape[1] < w.shape[2] else w.transpose(1, 2) @ w
    eye = torch.eye(gram.shape[1], device=w.device, dtype=w.dtype)
    return (gram - eye).pow(2).sum(dim=(1, 2))
