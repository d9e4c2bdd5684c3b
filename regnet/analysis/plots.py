"""The analysis figures: decision planes, accuracy-vs-ε curves, panel grids (the prediction galleries are
:mod:`regnet.predictions`).

Built like every regnet figure (:mod:`regnet.plotting`: matplotlib's object API, no pyplot) and saved with its
``save_figure`` (atomic); ``subplots``, ``save_figure`` and ``plot_matrix`` are importable from here too."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from regnet.plotting import plot_matrix, save_figure, subplots

__all__ = ["panel_grid", "plot_curves", "plot_matrix", "plot_planes", "save_figure", "subplots"]


def plot_planes(images: list[dict], title: str, class_names: Sequence[str] | None = None):
    """Grid of label images: one column per zoom, one row per plane; x0 marked at the centre; a legend of the
    classes drawn. Classes 0–9 keep tab10's colours in every figure (10-class models compare at a glance);
    with more classes, the ones present in this figure get distinct colours, so no two share one."""
    zooms = sorted({im["zoom"] for im in images}, reverse=True)
    planes = sorted({im["plane"] for im in images})
    present = sorted(set().union(*(np.unique(im["labels"].numpy()).tolist() for im in images)))
    if present and present[-1] < 10:
        classes, colors = list(range(10)), list(colormaps["tab10"].colors)
    else:
        classes = present
        colors = list(colormaps["tab20"].colors) if len(present) <= 20 else \
            [colormaps["turbo"](i / max(len(present) - 1, 1)) for i in range(len(present))]  # fmt: skip
    cmap = ListedColormap(colors[: len(classes)])
    index = np.full(max(classes, default=0) + 1, -1)
    index[classes] = np.arange(len(classes))  # class → colour slot
    fig, axes = subplots(len(planes), len(zooms), figsize=(2.6 * len(zooms), 2.6 * len(planes)), squeeze=False)
    for im in images:
        ax = axes[planes.index(im["plane"]), zooms.index(im["zoom"])]
        h = 1.0 / im["zoom"]
        ax.imshow(index[im["labels"].numpy()], cmap=cmap, vmin=-0.5, vmax=len(classes) - 0.5,
                  extent=(-h, h, h, -h), interpolation="nearest")  # fmt: skip
        ax.plot([0], [0], "k+", ms=8)
        ax.set_title(f"zoom {im['zoom']:g}, plane {im['plane']}", fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("b (along v2)", fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("a (along v1)", fontsize=7)
    names = [class_names[c] if class_names else str(c) for c in present]
    handles = [Patch(color=cmap(int(index[c]))) for c in present]
    fig.legend(handles, names, title="class", loc="center left", bbox_to_anchor=(0.91, 0.5), fontsize=7,
               title_fontsize=8, frameon=False)  # fmt: skip
    fig.suptitle(title)
    return fig


def plot_curves(df: pd.DataFrame, x: str, title: str, ylabel: str = "accuracy (%)"):
    """Mean ± ci95 curves, one line per variant; ``df`` has columns variant, x, mean, ci95."""
    fig, ax = subplots(figsize=(5, 3.5))
    for variant, g in df.groupby("variant"):
        g = g.sort_values(x)
        ax.plot(g[x], g["mean"], marker="o", ms=3, label=variant)
        ci = g["ci95"].fillna(0).to_numpy()
        ax.fill_between(g[x], g["mean"] - ci, g["mean"] + ci, alpha=0.2)
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def panel_grid(n: int, width: float = 2.8, height: float = 2.5, max_cols: int = 6):
    """(figure, flat list of n axes) in rows of at most ``max_cols`` panels; unused panels are hidden."""
    cols = max(1, min(n, max_cols))
    rows = max(1, -(-n // cols))
    fig, axes = subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    fig.set_layout_engine("constrained")  # a row's titles clear the x labels of the row above
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]
