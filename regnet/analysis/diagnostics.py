"""Per-run diagnostics: confusion matrix, top-k error, confidence galleries, learning curves and singular
values of the weights (to see what SVB does to them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from regnet.analysis import plots
from regnet.analysis.device import full_fp32
from regnet.confusion import confusion_matrix, write_confusion_matrix
from regnet.data.base import normalize
from regnet.files import write_atomic
from regnet.models.common import device_of
from regnet.predictions import gallery_figure, keep_confident
from regnet.regularizers.base import weight_matrices


def topk_error(logits: Tensor, targets: Tensor, k: int = 1) -> float:
    """Fraction of samples whose true class is not among the k highest logits."""
    k = min(k, logits.shape[-1])
    top = logits.topk(k, dim=-1).indices  # (N, k)
    return float(1.0 - (top == targets[:, None]).any(-1).float().mean())


def learning_curves(run_dir: str | Path) -> pd.DataFrame | None:
    """The run's ``metrics.csv`` (Lightning CSVLogger) with one row per epoch/step, or None if absent."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return None
    df = pd.read_csv(path)
    return df.groupby("step", as_index=False).first() if "step" in df else df


def curve_columns(curves: pd.DataFrame) -> list[str]:
    """The columns of a metrics log worth a learning curve: losses, accuracies, learning rates and each
    regularizer's penalty (``train/jacobian``, ``train/l1``, ...); not the error rates (1 − accuracy), top-5
    numbers or throughput."""
    skip = ("epoch", "step")
    return [c for c in curves.columns
            if c not in skip and not any(t in c for t in ("/err", "_top", "images_per_s"))]  # fmt: skip


def singular_values(model: nn.Module) -> dict[str, np.ndarray]:
    """Singular values of every weight matrix a regularizer sees (``regnet.regularizers.base.weight_matrices``:
    conv weights as out × (in·k·k), as SVB treats them), by module name."""
    return {name: torch.linalg.svdvals(w.detach().float().cpu()).numpy() for name, _, w in weight_matrices(model)}


@full_fp32()
@torch.no_grad()
def run_diagnostics(module, datamodule, run_dir: str | Path, out: str | Path, n_test: int | None = None) -> dict:
    """Write confusion matrix (CSV+PNG), top-k errors, galleries, learning curves and SV histograms to ``out``."""
    from regnet.analysis.runs import test_inputs

    out = Path(out)
    x, y = test_inputs(datamodule, n_test)
    device = device_of(module)
    logits = torch.cat([module.model(normalize(x[i:i + 500], datamodule.mean, datamodule.std).to(device)).cpu()
                        for i in range(0, len(x), 500)])  # fmt: skip
    c = logits.shape[-1]
    write_confusion_matrix(confusion_matrix(logits, y, c), out)
    summary = {f"top{k}_error": topk_error(logits, y, k) for k in (1, 3, 5) if k <= c}
    plots.save_figure(gallery_figure(keep_confident({}, logits, x, y, k=8)), out / "predictions.png")
    curves = learning_curves(run_dir)
    if curves is not None:
        cols = curve_columns(curves)
        fig, axes = plots.panel_grid(len(cols), width=3.2, height=2.8)
        for ax, col in zip(axes, cols):
            d = curves[["step", col]].dropna()
            ax.plot(d["step"], d[col], marker=".")
            ax.set_title(col, fontsize=8)
            ax.set_xlabel("step", fontsize=7)
        plots.save_figure(fig, out / "learning_curves.png")
    svs = singular_values(module.model)
    fig, axes = plots.panel_grid(len(svs))  # ResNet-18: 21 weights, 4 rows of 6
    for ax, (name, s) in zip(axes, svs.items()):
        ax.hist(s, bins=30)
        ax.set_title(name, fontsize=7)
        ax.set_xlabel("singular value", fontsize=7)
    plots.save_figure(fig, out / "singular_values.png")
    write_atomic(out / "diagnostics.json", pd.Series(summary).to_json(indent=2) + "\n")
    return summary
