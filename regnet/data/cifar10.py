"""CIFAR-10 (Krizhevsky 2009): 50k/10k 32×32 colour images, 10 classes."""

import torchvision

from regnet.data.cifar import CifarDataModule


class CIFAR10(CifarDataModule):
    name = "cifar10"
    torchvision_class = torchvision.datasets.CIFAR10
    num_classes = 10
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
