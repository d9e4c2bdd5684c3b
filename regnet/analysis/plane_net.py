"""A feed-forward network restricted to one 2-D plane of its input space, evaluated cheaply on CPU and GPU.

On the plane x = x0 + a·v1 + b·v2 the first layer L is affine, L(x) = L(x0) + a·Wv1 + b·Wv2, so a grid point
costs a 3-term combination instead of a convolution. When L is followed by a k × k max-pool (with a
non-decreasing activation on either side: act ∘ pool = pool ∘ act, so the pool is moved first) the
combination is formed once per offset in the pooling window and reduced with ``maximum``, so the
full-resolution feature map is never written. The result is laid out channels-last, where the next
convolution and max-pool are fastest on CPU.

This changes no label beyond float rounding (the tests compare the logits with ``model(x)``). It applies to
models whose ``forward`` is a chain of layers (checked with ``torch.fx``): LeNet and its variants, plain conv
stacks. For anything else (residual blocks, custom ops) :meth:`ChainModel.parse` returns None and the caller
evaluates the model point by point.

Measured with ``python benchmarks/decision_planes.py`` on a 2-core CPU: 0.5 s per 250² LeNet plane, against
4.6 s for the model point by point (benchmarks/RESULTS.md has the numbers and the per-layer profile).
"""

from __future__ import annotations

import torch
from torch import Tensor, fx, nn

MONOTONE = (nn.Tanh, nn.ReLU, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.Softplus, nn.Hardtanh, nn.ReLU6)


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
        self.first, self.rest = layers[0], pool_first(layers[1:])

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
        return PlaneNet(rest, maps.reshape(3, k * k or 1, -1).transpose(0, 1).contiguous(), shape)


class PlaneNet:
    """``logits(a, b)`` of a chain network at the points x0 + a·v1 + b·v2 (a, b: float32 vectors)."""

    def __init__(self, rest: list[nn.Module], basis: Tensor, shape: tuple[int, ...] | None):
        # basis (G, 3, D): L(x0), W v1, W v2 for each of the G offsets in the first pooling window
        self.rest, self.basis, self.shape = rest, basis, shape
        self._buf = torch.empty(2, 0, 0, device=basis.device)  # reused: each fresh MB-sized tensor faults its pages

    @torch.inference_mode()
    def logits(self, a: Tensor, b: Tensor) -> Tensor:
        n, d = len(a), self.basis.shape[2]
        if self._buf.shape[1] < n:
            self._buf = torch.empty(2, n, d, device=self.basis.device)
        h, tmp = self._buf[0, :n], self._buf[1, :n]
        coef = torch.stack([torch.ones_like(a), a, b], 1)  # (B, 3)
        torch.mm(coef, self.basis[0], out=h)
        for g in range(1, len(self.basis)):  # the fused max-pool
            torch.maximum(h, torch.mm(coef, self.basis[g], out=tmp), out=h)
        if self.shape is not None:  # (B, H, W, C) memory, seen as a channels-last (B, C, H, W) tensor
            h = h.view(-1, *self.shape).permute(0, 3, 1, 2)
        for layer in self.rest:
            h = _apply_(layer, h)
        if h.untyped_storage().data_ptr() == self._buf.untyped_storage().data_ptr():
            h = h.clone()  # never hand out the reused buffer
        return h


def _apply_(layer: nn.Module, h: Tensor) -> Tensor:
    """``layer(h)``, in place for activations (h is always an intermediate of :meth:`PlaneNet.logits`)."""
    if type(layer) is nn.Tanh and h.is_cpu:  # tanh x = 2σ(2x) − 1: ≤ 2e-7 from torch.tanh, ~4× faster on CPU
        return h.mul_(2).sigmoid_().mul_(2).sub_(1)
    if type(layer) is nn.ReLU:
        return h.relu_()
    if type(layer) is nn.Sigmoid:
        return h.sigmoid_()
    if _window(layer, tuple(h.shape[1:])) == 2 and h.is_cpu:  # 3 maximums: no index tensor, unlike max_pool2d
        h = h[:, :, : h.shape[2] // 2 * 2, : h.shape[3] // 2 * 2]
        out = torch.maximum(h[:, :, 0::2, 0::2], h[:, :, 0::2, 1::2])
        return torch.maximum(torch.maximum(out, h[:, :, 1::2, 0::2], out=out), h[:, :, 1::2, 1::2], out=out)
    return layer(h)
