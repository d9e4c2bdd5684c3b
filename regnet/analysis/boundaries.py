"""Decision boundaries in random 2-D planes through input space (hoffman2019_mnist, Tables 2/3).

A plane through a test input x0 (in the model's normalised input space) is spanned by two orthonormal
directions v1, v2 (Gram–Schmidt on Gaussian draws, unit L2 norm). The label image holds the predicted class
at x0 + a·v1 + b·v2 for a (rows) and b (columns) on ``linspace(−1/zoom, 1/zoom, resolution)``.

Speed: chain models (LeNet and its variants) are evaluated by :mod:`regnet.analysis.plane_net`, with the plane
folded into the first layer; other models point by point in batches. ``python benchmarks/decision_planes.py``
times the TV table of one LeNet (3 zooms × 50 planes × 250²); its timings are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from regnet.analysis.device import full_fp32
from regnet.analysis.plane_net import ChainModel
from regnet.analysis.total_variation import boundary_length, total_variation
from regnet.models.common import device_of

DEFAULT_ZOOMS = (0.025, 0.01, 0.001)
DEFAULT_RESOLUTION = 250
DEFAULT_PLANES = 50


@dataclass(frozen=True)
class PlaneParams:
    """Every parameter a TV number depends on; recorded next to it."""

    zoom: float
    resolution: int
    half_width: float  # 1 / zoom: the grid spans [−half_width, half_width]² in input-space units
    plane_seed: int | None
    x0_index: int
    plane: int


@dataclass(frozen=True)
class PlaneSettings:
    """How every model's decision planes are drawn. One object for a whole sweep, so that all its models are
    measured on identical planes (same ``seed``: same x0 and directions) and their TVs compare.

    ``keep_images``: label images kept per zoom, for figures. ``batch_size``: grid points per forward pass (speed
    and memory only; no label depends on it)."""

    zooms: tuple[float, ...] = DEFAULT_ZOOMS
    planes: int = DEFAULT_PLANES
    resolution: int = DEFAULT_RESOLUTION
    seed: int | None = 0
    keep_images: int = 0
    batch_size: int | None = None

    def __post_init__(self) -> None:
        for z in self.zooms:
            check_grid(z, self.resolution)
        if not isinstance(self.planes, int) or self.planes < 1:
            raise ValueError(f"planes={self.planes!r} is invalid: it must be an integer ≥ 1")
        object.__setattr__(self, "zooms", tuple(float(z) for z in self.zooms))

    def key(self) -> dict:
        """Every setting the records depend on (not ``batch_size``): what a cached result is stored under."""
        return {"zooms": list(self.zooms), "planes": self.planes, "resolution": self.resolution, "seed": self.seed,
                "keep_images": self.keep_images}  # fmt: skip


MAX_RESOLUTION = 10_000  # 10⁸ points per plane: hours per model even on a GPU


def check_grid(zoom: float, resolution: int) -> None:
    if not (isinstance(zoom, (int, float)) and zoom > 0 and math.isfinite(zoom)):
        raise ValueError(f"zoom={zoom!r} is invalid: it must be a positive number (the grid spans ±1/zoom), e.g. 0.01")
    if not isinstance(resolution, int) or not 2 <= resolution <= MAX_RESOLUTION:
        raise ValueError(
            f"resolution={resolution!r} is invalid: it must be an integer in [2, {MAX_RESOLUTION}] (points "
            "per axis, resolution² forward passes per plane and zoom), e.g. 250"
        )


def orthonormal_directions(shape: Sequence[int], generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Two orthonormal directions of ``shape`` (e.g. (C, H, W)): Gram–Schmidt on two Gaussian draws."""
    g1 = torch.randn(tuple(shape), generator=generator, dtype=torch.float64)
    g2 = torch.randn(tuple(shape), generator=generator, dtype=torch.float64)
    v1 = g1 / g1.norm()
    v2 = g2 - (g2 * v1).sum() * v1
    v2 = v2 / v2.norm()
    return v1.float(), v2.float()


def grid_axis(zoom: float, resolution: int) -> Tensor:
    """The a (= b) coordinates of the grid: ``linspace(−1/zoom, 1/zoom, resolution)``."""
    check_grid(zoom, resolution)
    return torch.linspace(-1.0 / zoom, 1.0 / zoom, resolution, dtype=torch.float64)


def first_linear_layer(model: nn.Module, example: Tensor) -> nn.Module | None:
    """The Conv2d (zero padding) or Linear that ``model`` applies first, directly to its input, else None.

    Found by running ``example`` (1, C, H, W) with pre-hooks on the leaf modules: the first leaf called must
    receive the input tensor itself (no preprocessing before it)."""
    calls: list[tuple[nn.Module, object]] = []
    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_pre_hook(lambda mod, args: calls.append((mod, args[0] if args else None)))
               for m in leaves]  # fmt: skip
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for h in handles:
            h.remove()
    if not calls or calls[0][1] is not example:
        return None
    layer = calls[0][0]
    if isinstance(layer, nn.Linear) or (type(layer) is nn.Conv2d and layer.padding_mode == "zeros"):
        return layer
    return None


def _linear_part(layer: nn.Module, x: Tensor) -> Tensor:
    """W·x without the bias: the layer's response to a direction."""
    if isinstance(layer, nn.Linear):
        return nn.functional.linear(x, layer.weight)
    return nn.functional.conv2d(x, layer.weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)


CPU_BATCH, GPU_BATCH = 1024, 16384  # CPU: small enough that a batch's activations stay in cache


@full_fp32()
@torch.inference_mode()
def decision_plane(
    model: nn.Module,
    x0: Tensor,
    v1: Tensor,
    v2: Tensor,
    zoom: float,
    resolution: int,
    batch_size: int | None = None,
    fast: bool = True,
    chain: ChainModel | None = None,
) -> Tensor:
    """Label image (resolution, resolution), int64 on the CPU: entry [i, j] is argmax model(x0 + a_i·v1 + b_j·v2)
    with a = b = linspace(−1/zoom, 1/zoom, resolution). x0, v1, v2: (C, H, W) in the model's input space.

    ``fast``: fold the plane into the model's first layer (exact up to float rounding):
    :mod:`regnet.analysis.plane_net` for chain models such as LeNet (also fuses the first max-pool,
    ~5× faster on CPU); otherwise, when the model's first operation is a Conv2d/Linear L on the raw input,
    L(x0 + a·v1 + b·v2) = L(x0) + a·W v1 + b·W v2 is precomputed, assuming the raw input feeds only that layer
    (true for ResNet-18); pass ``fast=False`` for a model that reuses its raw input.
    ``batch_size``: grid points per forward pass (default 1,024 on CPU, 16,384 on a GPU). ``chain``:
    ``ChainModel.parse(model)``, when the caller evaluates many planes of one model."""
    axis = grid_axis(zoom, resolution)
    device = device_of(model, x0.device)
    batch_size = batch_size or (CPU_BATCH if device.type == "cpu" else GPU_BATCH)
    x0, v1, v2 = (t.to(device=device, dtype=torch.float32) for t in (x0, v1, v2))
    chain = (chain or ChainModel.parse(model)) if fast else None
    if chain is not None:
        net, axis32 = chain.plane(x0, v1, v2), axis.to(device, torch.float32)
        rows = max(1, batch_size // resolution)  # whole grid rows per pass
        out = torch.cat([net.logits(a_, axis32, grid=True).argmax(-1) for a_ in axis32.split(rows)])
        return out.view(resolution, resolution).cpu()
    a, b = torch.meshgrid(axis, axis, indexing="ij")  # (R, R) each
    a, b = a.reshape(-1).to(device, torch.float32), b.reshape(-1).to(device, torch.float32)  # (R²,)
    first = first_linear_layer(model, x0.unsqueeze(0)) if fast else None
    if first is not None:  # plane in the first layer's output space: (1, C', H', W') each
        base, d1, d2 = (
            first(x0.unsqueeze(0)),
            _linear_part(first, v1.unsqueeze(0)),
            _linear_part(first, v2.unsqueeze(0)),
        )
    else:
        base, d1, d2 = x0.unsqueeze(0), v1.unsqueeze(0), v2.unsqueeze(0)
    basis = torch.cat([base, d1, d2]).flatten(1)  # (3, D): the plane as one small matrix
    coef = torch.stack([torch.ones_like(a), a, b], 1)  # (R², 3): grid point k = coef[k] @ basis
    out = torch.empty(a.numel(), dtype=torch.long, device=device)
    try:
        for start in range(0, a.numel(), batch_size):
            sl = slice(start, start + batch_size)
            points = (coef[sl] @ basis).view(-1, *base.shape[1:])  # (B, ...), one GEMM
            if first is None:
                out[sl] = model(points).argmax(-1)
            else:
                first.forward = lambda _x, points=points: points  # the first layer's output, precomputed
                out[sl] = model(x0.expand(len(points), *x0.shape)).argmax(-1)
    finally:
        if first is not None and "forward" in first.__dict__:
            del first.forward
    return out.view(resolution, resolution).cpu()


def distance_to_boundary(labels: Tensor, label0: int, zoom: float) -> float:
    """Distance in input space from x0 (the plane's centre) to the nearest grid point whose label differs
    from ``label0`` (x0's own class); ``inf`` if the whole plane has x0's label. v1, v2 are orthonormal, so
    distances in the plane are distances in input space."""
    resolution = labels.shape[0]
    axis = grid_axis(zoom, resolution)
    a, b = torch.meshgrid(axis, axis, indexing="ij")
    other = labels != label0
    if not other.any():
        return math.inf
    return float(torch.sqrt(a[other] ** 2 + b[other] ** 2).min())


def plane_metrics(labels: Tensor) -> dict[str, float]:
    """TV of one label image in both kinds and both modes, and the normalised boundary length."""
    out = {f"tv_{kind[:5]}_{mode}": total_variation(labels, kind, mode)
           for mode in ("boundary", "labels") for kind in ("isotropic", "anisotropic")}  # fmt: skip
    out["boundary_length"] = boundary_length(labels)
    return out


def sample_planes(inputs: Tensor, n_planes: int, seed: int | None = 0) -> list[tuple[int, Tensor, Tensor]]:
    """``n_planes`` (x0 index, v1, v2) for test inputs (N, C, H, W); with a seed, every caller with the same
    inputs gets the same planes, so models are compared on identical planes."""
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(seed)
    planes = []
    for _ in range(n_planes):
        idx = int(torch.randint(len(inputs), (1,), generator=g))
        v1, v2 = orthonormal_directions(inputs.shape[1:], g)
        planes.append((idx, v1, v2))
    return planes


def boundary_records(
    model: nn.Module, inputs: Tensor, settings: PlaneSettings = PlaneSettings()
) -> tuple[list[dict], list[dict]]:
    """One record per (zoom, plane): TVs, boundary length, distance to the boundary and every parameter.
    ``inputs``: normalised test inputs (N, C, H, W). Returns (records, the first ``settings.keep_images`` label
    images per zoom as dicts with the image)."""
    model.eval()
    device = device_of(model)
    chain = ChainModel.parse(model)
    records, images = [], []
    s = settings
    for p, (idx, v1, v2) in enumerate(sample_planes(inputs, s.planes, s.seed)):
        x0 = inputs[idx]
        with torch.inference_mode():
            label0 = int(model(x0.unsqueeze(0).to(device)).argmax(-1))
        for zoom in s.zooms:
            labels = decision_plane(model, x0, v1, v2, zoom, s.resolution, s.batch_size, chain=chain)
            params = PlaneParams(zoom, s.resolution, 1.0 / zoom, s.seed, idx, p)
            rec = asdict(params) | plane_metrics(labels)
            rec["distance"] = distance_to_boundary(labels, label0, zoom)
            rec["label0"] = label0
            records.append(rec)
            if p < s.keep_images:
                images.append({"zoom": zoom, "plane": p, "labels": labels, "label0": label0})
    return records, images
