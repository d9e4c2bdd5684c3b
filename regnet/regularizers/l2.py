"""L2 regularization as weight decay in the optimizer.

For SGD, weight decay ``wd`` adds ``wd · w`` to every gradient, i.e. it minimises
``loss + wd/2 · ‖w‖²`` (Krogh & Hertz 1992; the ``hoffman2019_mnist`` study used wd = 5e-4, as Hoffman et al. 2019).
"""

from regnet.regularizers.base import Regularizer, check_positive


class L2(Regularizer):
    name = "l2"  # only weight decay: each member of a stack hands its own to the optimizer

    def __init__(self, weight_decay: float = 5e-4):
        self.weight_decay = check_positive("reg.l2.weight_decay", weight_decay)
