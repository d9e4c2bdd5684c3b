"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 60k/10k 28×28 grey clothing images, 10 classes.

Offline, the files are also taken from Debian's ``dataset-fashion-mnist`` package
(``/usr/share/datasets/fashion-mnist``) and decompressed under ``data.root``.
Normalisation: the training set's own mean/std.
"""

import torchvision

from regnet.data.idx import IdxDataModule


class FashionMNIST(IdxDataModule):
    name = "fashion_mnist"
    torchvision_class = torchvision.datasets.FashionMNIST
    local_sources = ("/usr/share/datasets/fashion-mnist",)
    mean, std = (0.2860,), (0.3530,)
