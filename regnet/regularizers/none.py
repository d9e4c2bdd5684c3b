"""No regularization: the baseline."""

from regnet.regularizers.base import Regularizer


class NoRegularizer(Regularizer):
    """Adds nothing; present so that ``reg=none`` is an explicit, recorded choice."""

    name = "none"
