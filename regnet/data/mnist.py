"""MNIST (LeCun et al. 1998): 60k/10k 28×28 grey digits. Normalisation 0.1307/0.3081 as hoffman2019_mnist."""

import torchvision

from regnet.data.idx import IdxDataModule


class MNIST(IdxDataModule):
    name = "mnist"
    torchvision_class = torchvision.datasets.MNIST
    mean, std = (0.1307,), (0.3081,)
