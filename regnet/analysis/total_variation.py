"""Total variation of a label image (Rudin, Osher & Fatemi 1992, discretised with forward differences).

For a label image L (H, W) with Δrow[i, j] = L[i+1, j] − L[i, j] and Δcol[i, j] = L[i, j+1] − L[i, j]:

    anisotropic TV = Σ |Δrow| + Σ |Δcol|              over all (H−1)·W + H·(W−1) neighbouring pairs
    isotropic TV   = Σ √(Δrow² + Δcol²)                over the (H−1)·(W−1) grid

``mode="labels"`` uses differences of class indices, as the hoffman2019_mnist study did (a 0|9 boundary counts nine
times a 3|4 one, so the value depends on how classes are numbered). ``mode="boundary"`` (default) sets each
Δ to 1 where the label changes and 0 elsewhere: it counts boundary, independent of class numbering.
"""

from __future__ import annotations

import torch
from torch import Tensor

KINDS = ("isotropic", "anisotropic")
MODES = ("boundary", "labels")


def _differences(labels: Tensor, mode: str) -> tuple[Tensor, Tensor]:
    if labels.dim() != 2:
        raise ValueError(f"labels has shape {tuple(labels.shape)}: total_variation needs a 2-D (H, W) label image")
    if labels.is_floating_point():
        raise ValueError(f"labels has dtype {labels.dtype}: pass integer class indices (e.g. logits.argmax(-1))")
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is unknown: use one of {list(MODES)}")
    labels = labels.long()  # widen first: uint8 differences wrap around (0 − 9 = 247), bool has no subtraction
    d_row = labels[1:, :] - labels[:-1, :]  # (H-1, W)
    d_col = labels[:, 1:] - labels[:, :-1]  # (H, W-1)
    if mode == "boundary":
        return (d_row != 0).double(), (d_col != 0).double()
    return d_row.double().abs(), d_col.double().abs()


def total_variation(labels: Tensor, kind: str = "isotropic", mode: str = "boundary") -> float:
    """Total variation of a 2-D integer label image; ``kind`` isotropic | anisotropic, ``mode`` boundary | labels."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is unknown: use one of {list(KINDS)}")
    d_row, d_col = _differences(torch.as_tensor(labels), mode)
    if kind == "anisotropic":
        return float(d_row.sum() + d_col.sum())
    return float(torch.sqrt(d_row[:, :-1] ** 2 + d_col[:-1, :] ** 2).sum())  # (H-1, W-1)


def boundary_length(labels: Tensor) -> float:
    """Length of the decision boundary in units of the grid's side: isotropic boundary TV / (resolution − 1).

    A straight axis-parallel boundary across the image gives ≈ 1 at any resolution, so values are
    comparable across resolutions (unlike the raw TV, which grows linearly with resolution)."""
    labels = torch.as_tensor(labels)
    return total_variation(labels, "isotropic", "boundary") / (max(labels.shape) - 1)
