"""A feed-forward network restricted to one 2-D plane of its input space, evaluated cheaply on CPU and GPU.

On the plane x = x0 + a·v1 + b·v2 the first layer L is affine, L(x) = L(x0) + a·Wv1 + b·Wv2, so a grid point
costs a 3-term combination instead of a convolution. When L is followed by a k × k max-pool (with a
non-decreasing activation on either side: act ∘ pool = pool ∘ act, so the pool is moved first) the
combination is formed once per offset in the pooling window and reduced with ``maximum``, so the
full-resolution feature map is never written. The result is laid out channels-last, where the next
convolution and max-pool are fastest on CPU.

Three more rewrites, each exact up to float rounding: a tanh between two affine layers is computed as a
sigmoid, tanh x = 2σ(2x) − 1, with the 2 folded into the layer before and the 2·(·) − 1 into the layer after
(one cheap in-place pass instead of a slow tanh); a max-pool of a channels-last map is two ``maximum`` passes
over contiguous channel vectors; a ``Flatten`` before a ``Linear`` reads the channels-last memory as it is,
with the Linear's columns permuted to (H, W, C) order. On a product grid (``logits(a, b, grid=True)``) the
first layer is one broadcast multiply-add per pooling offset.

This changes no label beyond float rounding (the tests compare the logits with ``model(x)``). It applies to
models whose ``forward`` is a chain of layers (checked with ``torch.fx``): LeNet and its variants, plain conv
stacks. For anything else (residual blocks, custom ops) :meth:`ChainModel.parse` returns None and the caller
evaluates the model point by point.

``python benchmarks/decision_planes.py`` times it against the model point by point; benchmarks/RESULTS.md has
the numbers and the per-layer profiles.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, fx, nn

MONOTONE = (nn.Tanh, nn.ReLU, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.Softplus, nn.Hardtanh, nn.ReLU6)
# in eval mode these commute with x ↦ αx + β for α > 0 (max-pool) or are the identity
PASS_THROUGH = (nn.MaxPool2d, nn.Flatten, nn.Identity, nn.modules.dropout._DropoutNd)


def layer_chain(model: nn.Module) -> list[nn.Module] | None:
    """The leaf layers ``model.forward`` applies one after another, or None if it does anything else."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 — untraceable forward: not a plain chain
        return None
    nodes = list(graph.nodes)
    if len(nodes) < 3 or nodes[0].op != "placeholder" or nodes[-1].op != "output":
        return None
    layers, prev = [], nodes[0]
    for node in nodes[1:-1]:
        if node.op != "call_module" or node.args != (prev,) or node.kwargs:
            return None
        layers.append(model.get_submodule(node.target))
        prev = node
    return layers if nodes[-1].args == (prev,) else None


def pool_first(layers: list[nn.Module]) -> list[nn.Module]:
    """Swap every (non-decreasing activation, max-pool) pair: same output, the activation sees k² fewer values."""
    out = list(layers)
    for i in range(len(out) - 1):
        if isinstance(out[i], MONOTONE) and isinstance(out[i + 1], nn.MaxPool2d):
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


def tanh_as_sigmoid(layers: list[nn.Module]) -> tuple[float, list[nn.Module]]:
    """Replace each Tanh that sits between two affine layers (pass-through layers aside) by a Sigmoid:
    tanh x = 2σ(2x) − 1, so the layer before is scaled by 2 and the layer after reads 2s − 1 (W ↦ 2W,
    b ↦ b − W·1; a Conv2d only without padding, whose zeros would otherwise stand for s = 0). The list starts
    after the plane's first layer, whose scale factor is returned. Changed layers are copies."""
    out, first_scale = list(layers), 1.0
    for i, layer in enumerate(layers):
        if type(layer) is not nn.Tanh:
            continue
        j = _neighbour(out, i, -1)
        k = _neighbour(out, i, +1)
        after = out[k] if k < len(out) else None
        padded = type(after) is nn.Conv2d and after.padding not in (0, (0, 0), "valid")
        if not (j < 0 or type(out[j]) in (nn.Conv2d, nn.Linear)) or type(after) not in (nn.Conv2d, nn.Linear) or padded:
            continue
        if j < 0:
            first_scale *= 2
        else:
            out[j] = _affine_copy(out[j], scale_out=True)
        out[k] = _affine_copy(after, scale_out=False)
        out[i] = nn.Sigmoid()
    return first_scale, out


def _neighbour(layers: list[nn.Module], i: int, step: int) -> int:
    """The index of the nearest layer before (step −1) or after (+1) ``i`` that is not pass-through."""
    i += step
    while 0 <= i < len(layers) and isinstance(layers[i], PASS_THROUGH):
        i += step
    return i


@torch.no_grad()
def _affine_copy(layer: nn.Module, scale_out: bool) -> nn.Module:
    """A copy of a Conv2d/Linear computing 2·layer(x) (``scale_out``) or layer(2x − 1)."""
    new = copy.deepcopy(layer)
    if scale_out:
        new.weight.mul_(2)
        if new.bias is not None:
            new.bias.mul_(2)
        return new
    row_sums = layer.weight.flatten(1).sum(1)
    new.weight.mul_(2)
    if new.bias is None:
        new.bias = nn.Parameter(-row_sums)
    else:
        new.bias.sub_(row_sums)
    return new


class FlattenHWC(nn.Module):
    """Flatten (N, C, H, W) in (H, W, C) order: a view of channels-last memory."""

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 2, 3, 1).reshape(len(x), -1)


@torch.no_grad()
def flatten_channels_last(layers: list[nn.Module], chw: tuple[int, int, int], device: torch.device) -> list[nn.Module]:
    """Replace each Flatten of a (C, H, W) map that feeds a Linear (dropout aside) by :class:`FlattenHWC` and
    the Linear by a copy with its columns permuted to match. ``chw``: the shape entering ``layers``."""
    out, x = list(layers), torch.zeros(1, *chw, device=device)
    for i, layer in enumerate(layers):
        k = i + 1
        while k < len(out) and isinstance(out[k], nn.modules.dropout._DropoutNd):
            k += 1
        if (
            type(layer) is nn.Flatten
            and (layer.start_dim, layer.end_dim) == (1, -1)
            and x.dim() == 4
            and k < len(out)
            and type(out[k]) is nn.Linear
        ):
            linear = copy.deepcopy(out[k])
            linear.weight = nn.Parameter(linear.weight.unflatten(1, x.shape[1:]).permute(0, 2, 3, 1).flatten(1))
            out[i], out[k] = FlattenHWC(), linear
        x = layer(x)
    return out


def _window(pool: nn.Module | None, shape: tuple[int, ...]) -> int:
    """k if ``pool`` is a non-overlapping k × k max-pool that fits a (C, H, W) map, else 0."""
    if not isinstance(pool, nn.MaxPool2d) or len(shape) != 3 or pool.return_indices or pool.ceil_mode:
        return 0
    k, s, p, d = pool.kernel_size, pool.stride, pool.padding, pool.dilation
    if not all(isinstance(v, int) for v in (k, s, p, d)) or s != k or p != 0 or d != 1:
        return 0
    return k if min(shape[1:]) >= k else 0


class ChainModel:
    """A model whose ``forward`` is a chain of layers, the first a Conv2d (zero padding) or Linear."""

    def __init__(self, layers: list[nn.Module]):
        self.first = layers[0]
        self.first_scale, self.rest = tanh_as_sigmoid(pool_first(layers[1:]))
        self._rest_for: dict[tuple[int, ...], list[nn.Module]] = {}  # rest with channels-last flattens, per shape

    @classmethod
    def parse(cls, model: nn.Module) -> ChainModel | None:
        """None if ``model`` is not such a chain (then evaluate it point by point) or is in training mode."""
        layers = layer_chain(model)
        if not layers or model.training:
            return None
        first = layers[0]
        if not (type(first) is nn.Conv2d and first.padding_mode == "zeros") and type(first) is not nn.Linear:
            return None
        return cls(layers)

    @torch.inference_mode()
    def plane(self, x0: Tensor, v1: Tensor, v2: Tensor) -> PlaneNet:
        """The network on the plane x0 + a·v1 + b·v2 (x0, v1, v2 shaped like one input)."""
        first, rest = self.first, self.rest
        if isinstance(first, nn.Conv2d):
            maps = torch.cat([first(x0[None]), first._conv_forward(torch.stack([v1, v2]), first.weight, None)])
        else:
            maps = torch.cat([first(x0.reshape(1, -1)), torch.stack([v1, v2]).reshape(2, -1) @ first.weight.T])
        maps = maps * self.first_scale
        k = _window(rest[0] if rest else None, tuple(maps.shape[1:]))
        if k:  # (3, C, H, W) → (3, k², H/k · W/k · C): one channels-last map per offset in the window
            c, h, w = maps.shape[1:]
            h, w = h // k * k, w // k * k
            maps = maps[:, :, :h, :w].reshape(3, c, h // k, k, w // k, k).permute(0, 3, 5, 2, 4, 1)
            shape, rest = (h // k, w // k, c), rest[1:]
        elif maps.dim() == 4:  # no pool to fuse: keep the map, channels-last
            shape = tuple(maps.shape[2:]) + (maps.shape[1],)
            maps = maps.permute(0, 2, 3, 1)
        else:
            shape = None
        if shape is not None:
            chw = (shape[2], shape[0], shape[1])
            if chw not in self._rest_for:
                self._rest_for[chw] = flatten_channels_last(rest, chw, maps.device)
            rest = self._rest_for[chw]
        return PlaneNet(rest, maps.reshape(3, k * k or 1, -1).transpose(0, 1).contiguous(), shape)


class PlaneNet:
    """``logits(a, b)`` of a chain network at the points x0 + a·v1 + b·v2 (a, b: float32 vectors)."""

    def __init__(self, rest: list[nn.Module], basis: Tensor, shape: tuple[int, ...] | None):
        # basis (G, 3, D): L(x0), W v1, W v2 for each of the G offsets in the first pooling window
        self.rest, self.basis, self.shape = rest, basis, shape
        # tanh as 2σ(2x) − 1 and the channels-last max-pool are faster on CPU only; a GPU runs the layers as
        # they are (a test sets this False on the CPU to check that path's numbers)
        self.cpu_kernels = basis.is_cpu
        self._buf = torch.empty(2, 0, 0, device=basis.device)  # reused: each fresh MB-sized tensor faults its pages

    @torch.inference_mode()
    def logits(self, a: Tensor, b: Tensor, grid: bool = False) -> Tensor:
        """Logits (B, classes) at the points (a[k], b[k]); with ``grid``, at every (a[i], b[j]), row-major
        (B = len(a) · len(b))."""
        n, d = len(a) * len(b) if grid else len(a), self.basis.shape[2]
        if self._buf.shape[1] < n:
            self._buf = torch.empty(2, n, d, device=self.basis.device)
        h, tmp = self._buf[0, :n], self._buf[1, :n]
        coef = None if grid else torch.stack([torch.ones_like(a), a, b], 1)  # (B, 3)
        for g, basis in enumerate(self.basis):  # one first-layer map per offset of the fused max-pool
            out = h if g == 0 else tmp
            if grid:  # row part L(x0) + a·Wv1 once per row, then + b·Wv2: one broadcast pass
                rows = torch.addcmul(basis[0], a[:, None], basis[1])
                torch.addcmul(rows[:, None], b[None, :, None], basis[2], out=out.view(len(a), len(b), d))
            else:
                torch.mm(coef, basis, out=out)
            if g:
                torch.maximum(h, tmp, out=h)
        if self.shape is not None:  # (B, H, W, C) memory, seen as a channels-last (B, C, H, W) tensor
            h = h.view(-1, *self.shape).permute(0, 3, 1, 2)
        for layer in self.rest:
            h = _apply_(layer, h, self.cpu_kernels)
        if h.untyped_storage().data_ptr() == self._buf.untyped_storage().data_ptr():
            h = h.clone()  # never hand out the reused buffer
        return h


def _apply_(layer: nn.Module, h: Tensor, cpu_kernels: bool) -> Tensor:
    """``layer(h)``, in place for activations (h is always an intermediate of :meth:`PlaneNet.logits`)."""
    if type(layer) is nn.Tanh and cpu_kernels:  # tanh x = 2σ(2x) − 1: ≤ 2e-7 from torch.tanh, ~4× faster on CPU
        return h.mul_(2).sigmoid_().mul_(2).sub_(1)
    if type(layer) is nn.ReLU:
        return h.relu_()
    if type(layer) is nn.Sigmoid:
        return h.sigmoid_()
    k = _window(layer, tuple(h.shape[1:]))
    if k and cpu_kernels and h.dim() == 4 and h.is_contiguous(memory_format=torch.channels_last):
        return _max_pool_channels_last(h, k)
    return layer(h)


def _max_pool_channels_last(h: Tensor, k: int) -> Tensor:
    """k × k max-pool (stride k) of a channels-last map as maximums of contiguous channel vectors: along W,
    then along H. ~3× faster on CPU than ``max_pool2d`` or strided maximums."""
    n, c, height, width = h.shape
    hh, ww = height // k, width // k
    x = h.permute(0, 2, 3, 1)[:, : hh * k, : ww * k].reshape(n, hh * k, ww, k, c)
    x = _max_over(x, k).view(n, hh, k, ww * c)  # (N, H, W/k, C) → rows grouped by k
    return _max_over(x, k).view(n, hh, ww, c).permute(0, 3, 1, 2)


def _max_over(x: Tensor, k: int) -> Tensor:
    """Maximum over dimension −2 (of size k) of x."""
    if k == 1:
        return x.select(-2, 0).contiguous()
    out = torch.maximum(x.select(-2, 0), x.select(-2, 1))
    for j in range(2, k):
        torch.maximum(out, x.select(-2, j), out=out)
    return out
