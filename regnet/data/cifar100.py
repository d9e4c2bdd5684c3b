"""CIFAR-100 (Krizhevsky 2009): 50k/10k 32×32 colour images, 100 fine classes.
Normalisation as the cifar100_resnet18 study: mean (0.5071, 0.4865, 0.4409), std (0.2009, 0.1984, 0.2023)."""

import torchvision

from regnet.data.cifar import CifarDataModule


class CIFAR100(CifarDataModule):
    name = "cifar100"
    torchvision_class = torchvision.datasets.CIFAR100
    num_classes = 100
    mean, std = (0.5071, 0.4865, 0.4409), (0.2009, 0.1984, 0.2023)
