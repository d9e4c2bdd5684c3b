"""The confusion matrix, counted by one function and written by one: the test-end callback
(``regnet.callbacks.confusion``) and the per-run diagnostics of analysis both use them.

Rows are the true class, columns the predicted class (the arg-max of the logits).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from regnet.files import write_atomic
from regnet.plotting import plot_matrix, save_figure


def confusion_matrix(logits: Tensor, targets: Tensor, num_classes: int) -> Tensor:
    """(num_classes, num_classes) int64 counts on ``logits``' device; logits (N, C), targets (N,)."""
    index = targets.long() * num_classes + logits.argmax(-1).long()
    return torch.bincount(index, minlength=num_classes**2).view(num_classes, num_classes)


def write_confusion_matrix(matrix: Tensor | np.ndarray, out_dir: str | os.PathLike, name: str = "confusion_matrix",
                           title: str = "confusion matrix (rows: true, columns: predicted)") -> None:  # fmt: skip
    """``<out_dir>/<name>.csv`` (class × class counts, with row and column indices) and ``<name>.png``."""
    import pandas as pd

    matrix = matrix.cpu().numpy() if isinstance(matrix, Tensor) else np.asarray(matrix)
    out = Path(out_dir)
    write_atomic(out / f"{name}.csv", pd.DataFrame(matrix).to_csv())
    save_figure(plot_matrix(matrix, title), out / f"{name}.png")
