"""The most and least confident right and wrong predictions, kept by one function and drawn by one: the test-end
callback (``regnet.callbacks.predictions``) and the per-run diagnostics of analysis both use them.

lenet5_lecun's study showed these four galleries after training. Confidence is the softmax probability of the
predicted class. :func:`keep_confident` is a running top-k per gallery on the device, so it can follow test
batches as they go by (no host sync per batch) or take a whole test set at once.
"""

from __future__ import annotations

import torch
from torch import Tensor

from regnet.plotting import subplots

# gallery name → (right predictions?, most confident first?)
GALLERIES = {
    "least confident, wrong": (False, False),
    "most confident, wrong": (False, True),
    "most confident, right": (True, True),
    "least confident, right": (True, False),
}
Kept = dict[str, tuple[Tensor, Tensor, Tensor, Tensor]]  # gallery → (±confidence, images, labels, predicted)


def keep_confident(kept: Kept, logits: Tensor, images: Tensor, labels: Tensor, k: int) -> Kept:
    """``kept`` updated with a batch: logits (N, C), images (N, C, H, W), labels (N,); k images per gallery."""
    confidence, predicted = logits.detach().float().softmax(-1).max(-1)
    right = predicted == labels
    out = {}
    for name, (want_right, most) in GALLERIES.items():
        # the batch's candidates: the others get −inf and never outrank a real one
        score = torch.where(right == want_right, confidence if most else -confidence, -torch.inf)
        parts = (score, images.detach(), labels, predicted)
        if name in kept:
            parts = tuple(torch.cat([old, new]) for old, new in zip(kept[name], parts, strict=True))
        top = parts[0].topk(min(k, len(parts[0]))).indices
        out[name] = tuple(p[top] for p in parts)
    return out


def gallery_figure(kept: Kept):
    """One row per gallery: each image (scaled to its own range) titled true → predicted (confidence)."""
    k = max(len(v[0]) for v in kept.values())
    fig, axes = subplots(len(kept), k, figsize=(1.6 * k, 2.0 * len(kept)), squeeze=False)
    for row, (name, (score, images, labels, predicted)) in zip(axes, kept.items(), strict=True):
        row[0].set_ylabel(name, fontsize=8)
        for i, ax in enumerate(row):
            ax.set_xticks([]), ax.set_yticks([])
            if i >= len(score) or not torch.isfinite(score[i]):
                ax.set_frame_on(False)
                continue
            image = images[i].detach().float().cpu()
            image = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-12)
            ax.imshow(image.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray")
            ax.set_title(f"{int(labels[i])} → {int(predicted[i])} ({float(score[i].abs()):.2f})", fontsize=8)
    return fig
