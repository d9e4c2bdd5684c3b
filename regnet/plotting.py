"""Figures written by training (the test confusion matrix) and by analysis alike, each saved atomically.

Figures are built with matplotlib's object API (``matplotlib.figure.Figure``), never through pyplot: no
backend is chosen or needed (headless runs just work), nothing is left open in a notebook, and a notebook
shows a figure with ``display(fig)`` after ``%matplotlib inline``."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from regnet.files import write_atomic


def subplots(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (5, 3.5), squeeze: bool = True):
    """(figure, axes) like ``pyplot.subplots``, without pyplot."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save ``fig`` as PNG to ``path`` atomically: rendered in memory, then written with ``write_atomic``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    write_atomic(path, buffer.getvalue())
    return Path(path)


def plot_matrix(matrix: np.ndarray, title: str = "confusion matrix"):
    """Confusion matrix, rows = true class, columns = predicted class."""
    n = len(matrix)
    side = min(max(4, n * 0.45), 12)  # 100 classes: 12 inches, no numbers in the cells
    fig, ax = subplots(figsize=(side, side))
    ax.imshow(matrix, cmap="Blues")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return fig
