"""Softmax cross-entropy on logits: −1/N Σ_n Σ_c q_nc log softmax(z_n)_c, q the one-hot target (or a target
distribution). The loss of hoffman2019_mnist, cifar100_resnet18 and mnist_small_cnns."""

from __future__ import annotations

import torch.nn.functional as F

from regnet.losses.base import BatchMeanLoss


class CrossEntropy(BatchMeanLoss):
    name = "cross_entropy"
    per_sample = F.cross_entropy  # logits (M, C); targets (M,) int64 or (M, C) probabilities
