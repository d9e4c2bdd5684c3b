"""The "wide" model: S models of one architecture as one ``nn.Module`` whose every kernel serves all S.

Layout. Every activation is ``(N, S·D, ...)``: member s's features are the contiguous block ``[s·D, (s+1)·D)``
of dim 1, in the member's own order. Then the layers without parameters work unchanged (tanh, ReLU, max/avg
pooling, adaptive pooling, ``Flatten``, ``x + identity``): they act per channel or per element, and flattening
``(N, S·C, H, W)`` gives ``(N, S·C·H·W)``, member-major, each block in the member's C, H, W order. The layers
with parameters become:

- ``Conv2d``: one convolution with ``groups · S`` groups over the weights ``(S·O, I/g, k, k)``;
- ``Linear``: one batched matmul ``(S, N, I) @ (S, I, O)``;
- ``BatchNorm1d/2d``: one batch norm over ``S·C`` channels, so each member's statistics come from its own
  batch and its running statistics update in place (what ``vmap`` cannot do);
- ``Dropout``/``Dropout2d``: one mask over the whole tensor with each member's own p (independent draws);
- LeNet-5's ``Subsampling`` and ``SparseConv2d``: their per-map coefficients, masks, grouped.

Every parameter and buffer is stored as ``(S, *shape in the member's model)`` under the member's own name, so
``member_state(wide, s)`` is exactly member s's ``state_dict``. Layers with parameters say ``member_axis = True``
(and the weight layers ``weight_layer = True``): the regularizers see every member's weights through them
(``regnet.regularizers.base.member_weight_matrices``).
A model is stacked only if every module in it is one of these, or a container whose ``forward`` was read and
found layout-safe (``SAFE_FORWARDS``, and the models' own: the model registry says which); anything else is
refused by :func:`stack_refusal` with one line.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from regnet.models.lenet5 import SparseConv2d, Subsampling
from regnet.models.registry import layout_safe_forwards, stack_refusal_of

#: modules without parameters that act per element or per channel: layout-safe as they are
ELEMENTWISE = (nn.Tanh, nn.ReLU, nn.Sigmoid, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Identity)
#: containers whose own forward only chains children, adds residuals, flattens from dim 1 or applies tanh: torch's;
#: the models' are read from the model registry (``@register_model``, regnet/models/registry.py) at each check
SAFE_FORWARDS = frozenset({nn.Sequential.forward})


def _stack(tensors: list[Tensor]) -> Tensor:
    return torch.stack([t.detach() for t in tensors]).clone()


class StackedConv2d(nn.Module):
    """S ``nn.Conv2d`` of one shape as one grouped convolution; weight (S, O, I/g, k, k), bias (S, O)."""

    member_axis = weight_layer = True  # a Conv weight per member: the regularizers' weight matrices

    def __init__(self, convs: list[nn.Conv2d]):
        super().__init__()
        c = convs[0]
        self.S, self.stride, self.padding, self.dilation, self.groups = (
            len(convs),
            c.stride,
            c.padding,
            c.dilation,
            c.groups,
        )
        self.weight = nn.Parameter(_stack([m.weight for m in convs]))
        self.bias = nn.Parameter(_stack([m.bias for m in convs])) if c.bias is not None else None

    def forward(self, x: Tensor) -> Tensor:  # (N, S·I, H, W) → (N, S·O, H', W')
        bias = self.bias.flatten() if self.bias is not None else None
        return F.conv2d(
            x, self.weight.flatten(0, 1), bias, self.stride, self.padding, self.dilation, self.groups * self.S
        )


class StackedLinear(nn.Module):
    """S ``nn.Linear`` as one batched matmul; weight (S, O, I), bias (S, O)."""

    member_axis = weight_layer = True

    def __init__(self, linears: list[nn.Linear]):
        super().__init__()
        self.S = len(linears)
        self.weight = nn.Parameter(_stack([m.weight for m in linears]))
        self.bias = nn.Parameter(_stack([m.bias for m in linears])) if linears[0].bias is not None else None

    def forward(self, x: Tensor) -> Tensor:  # (N, S·I) → (N, S·O)
        n = x.shape[0]
        xs = x.view(n, self.S, -1).transpose(0, 1)  # (S, N, I)
        wt = self.weight.transpose(1, 2)  # (S, I, O)
        out = torch.baddbmm(self.bias.unsqueeze(1), xs, wt) if self.bias is not None else torch.bmm(xs, wt)
        return out.transpose(0, 1).reshape(n, -1)


class StackedBatchNorm(nn.Module):
    """S ``BatchNorm1d``/``BatchNorm2d`` as one over S·C channels: per-member batch statistics, running
    statistics (S, C) updated in place, ``num_batches_tracked`` (S,)."""

    member_axis = True

    def __init__(self, norms: list[nn.modules.batchnorm._BatchNorm]):
        super().__init__()
        b = norms[0]
        self.S, self.eps, self.momentum, self.track = len(norms), b.eps, b.momentum, b.track_running_stats
        self.weight = nn.Parameter(_stack([m.weight for m in norms])) if b.affine else None
        self.bias = nn.Parameter(_stack([m.bias for m in norms])) if b.affine else None
        if self.track:
            self.register_buffer("running_mean", _stack([m.running_mean for m in norms]))
            self.register_buffer("running_var", _stack([m.running_var for m in norms]))
            self.register_buffer("num_batches_tracked", _stack([m.num_batches_tracked for m in norms]))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def forward(self, x: Tensor) -> Tensor:  # (N, S·C, ...) as nn.BatchNorm*d's forward, per member
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative average; members step together
                factor = 1.0 / float(self.num_batches_tracked[0])
        use_batch = self.training or not self.track
        return F.batch_norm(
            x,
            self.running_mean.view(-1) if self.track else None,
            self.running_var.view(-1) if self.track else None,
            self.weight.flatten() if self.weight is not None else None,
            self.bias.flatten() if self.bias is not None else None,
            use_batch,
            factor,
            self.eps,
        )


class StackedDropout(nn.Module):
    """S ``nn.Dropout`` (or ``Dropout2d``: whole channels) with each member's own p: one uniform draw over the
    whole tensor, so every member's mask is an independent draw; p = 0 is the identity (no draw if all are 0)."""

    def __init__(self, drops: list[nn.Module], channelwise: bool):
        super().__init__()
        self.S, self.channelwise = len(drops), channelwise
        self.register_buffer("p", torch.tensor([float(m.p) for m in drops]), persistent=False)
        self.any_p = any(float(m.p) > 0 for m in drops)  # on the host: no device sync per step

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or not self.any_p:
            return x
        n = x.shape[0]
        xs = x.view(n, self.S, -1, *x.shape[2:]) if self.channelwise else x.view(n, self.S, -1)  # member axis 1
        mask_shape = (*xs.shape[:3], *([1] * (xs.dim() - 3))) if self.channelwise else xs.shape
        p = self.p.to(x.dtype).view(1, self.S, *([1] * (xs.dim() - 2)))
        keep = torch.rand(mask_shape, device=x.device, dtype=x.dtype) >= p
        scale = torch.where(p < 1, 1.0 / (1.0 - p).clamp_min(1e-12), torch.zeros_like(p))
        return (xs * keep * scale).view_as(x)


class StackedSubsampling(nn.Module):
    """S LeNet-5 ``Subsampling`` layers: tanh(coefficient · avgpool2(x) + bias) with (S, C) coefficients."""

    member_axis = True

    def __init__(self, layers: list[Subsampling]):
        super().__init__()
        self.coefficient = nn.Parameter(_stack([m.coefficient for m in layers]))
        self.bias = nn.Parameter(_stack([m.bias for m in layers]))

    def forward(self, x: Tensor) -> Tensor:
        pooled = F.avg_pool2d(x, kernel_size=2, stride=2)
        return torch.tanh(self.coefficient.view(1, -1, 1, 1) * pooled + self.bias.view(1, -1, 1, 1))


class StackedSparseConv2d(nn.Module):
    """S LeNet-5 ``SparseConv2d`` as one grouped convolution with ``weight · mask``; mask (S, O, I, 1, 1)."""

    member_axis = weight_layer = True  # a weight matrix as ``weight · mask`` (SVB refuses it, soft SVB sees it)

    def __init__(self, convs: list[SparseConv2d]):
        super().__init__()
        self.S = len(convs)
        self.register_buffer("mask", _stack([m.mask for m in convs]))
        self.weight = nn.Parameter(_stack([m.weight for m in convs]))
        self.bias = nn.Parameter(_stack([m.bias for m in convs]))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, (self.weight * self.mask).flatten(0, 1), self.bias.flatten(), groups=self.S)


def _convert(modules: list[nn.Module]) -> nn.Module:
    m = modules[0]
    if type(m) is nn.Conv2d:
        return StackedConv2d(modules)
    if type(m) is nn.Linear:
        return StackedLinear(modules)
    if type(m) in (nn.BatchNorm1d, nn.BatchNorm2d):
        return StackedBatchNorm(modules)
    if type(m) in (nn.Dropout, nn.Dropout2d):
        return StackedDropout(modules, channelwise=type(m) is nn.Dropout2d)
    if type(m) is Subsampling:
        return StackedSubsampling(modules)
    if type(m) is SparseConv2d:
        return StackedSparseConv2d(modules)
    if isinstance(m, ELEMENTWISE) or (type(m) is nn.Flatten and m.start_dim == 1 and m.end_dim == -1):
        return copy.deepcopy(m)
    wide = copy.copy(m)  # a safe container: its own attributes and forward, stacked children
    wide._modules = {name: _convert([mm._modules[name] for mm in modules]) for name in m._modules}
    wide._parameters, wide._buffers = {}, {}
    return wide


def stack_refusal(model: nn.Module, prefix: str = "") -> str | None:
    """Why ``model`` cannot be stacked (one line), or None if it can."""
    for name, m in model.named_modules(prefix=prefix):
        if type(m) in (nn.Conv2d,):
            if m.padding_mode != "zeros":
                return f"{name}: Conv2d padding_mode={m.padding_mode!r} has no stacked version"
            continue
        if type(m) in (nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout, nn.Dropout2d, Subsampling, SparseConv2d):
            continue
        if isinstance(m, ELEMENTWISE) or (type(m) is nn.Flatten and m.start_dim == 1 and m.end_dim == -1):
            continue
        if (reason := stack_refusal_of(m)) is not None:  # a registered model's setting that cannot stack
            return reason
        safe = type(m).forward in SAFE_FORWARDS | layout_safe_forwards()
        if not safe or m._parameters or any(b is not None for b in m._buffers.values()):
            return f"{name or 'the model'} ({type(m).__name__}) has no stacked version"
    return None


def stack_models(models: list[nn.Module]) -> nn.Module:
    """One wide module computing all ``models`` at once (see the module docstring); they must share a
    structure (:func:`structure`) and be stackable (:func:`stack_refusal`)."""
    reason = stack_refusal(models[0])
    if reason:
        raise ValueError(f"cannot stack: {reason}")
    first = structure(models[0])
    for m in models[1:]:
        if structure(m) != first:
            raise ValueError("cannot stack models of different structures")
    wide = _convert(list(models))
    wide.train(models[0].training)
    return wide


def structure(model: nn.Module) -> tuple:
    """What must agree for models to stack: module types and settings (not dropout p), parameter and buffer
    names and shapes, buffer values that are not statistics (masks)."""
    out = []
    for name, m in model.named_modules():
        settings = tuple(
            sorted(
                (k, repr(v))
                for k, v in vars(m).items()
                if not k.startswith("_")
                and k != "training"
                and not (k == "p" and isinstance(m, nn.Dropout | nn.Dropout2d))
            )
        )
        out.append((name, type(m).__qualname__, settings))
    out += [(n, tuple(p.shape), str(p.dtype)) for n, p in model.named_parameters()]
    for n, b in model.named_buffers():
        stat = n.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")
        out.append((n, tuple(b.shape), str(b.dtype), None if stat else b.cpu().flatten().tolist()))
    return tuple(out)


def member_state(wide: nn.Module, s: int) -> dict[str, Tensor]:
    """Member s's ``state_dict`` (the keys and shapes of its own model), as CPU copies."""
    return {k: v[s].detach().cpu().clone() for k, v in wide.state_dict().items()}
