"""Channels-last (NHWC) memory format for the model's weights, and so for its activations.

cuDNN and oneDNN pick the NHWC convolution kernels when the input *or* the weight is channels-last, and their
outputs stay channels-last through BatchNorm, ReLU and pooling; converting the weights once makes every
convolution after the first one NHWC without touching the batches. With bf16 autocast this is the layout the
tensor-core convolutions want (NVIDIA, "Convolutional Layers User's Guide", Tensor Layouts; PyTorch tutorial
"Channels Last Memory Format"). Off unless ``callbacks.channels_last.enabled=true``.
"""

from __future__ import annotations

import lightning as L
import torch


class ChannelsLast(L.Callback):
    def __init__(self, enabled: bool = False):
        self.enabled = bool(enabled)

    def setup(self, trainer, pl_module, stage: str) -> None:
        """Before the strategy moves the model to its device and builds the optimizer (same Parameters)."""
        if self.enabled:
            pl_module.model.to(memory_format=torch.channels_last)
