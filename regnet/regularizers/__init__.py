"""Regularizers: one file each, one YAML each in ``conf/reg/``.

See ``base.Regularizer`` for the hooks a regularizer can use and ``base.weight_matrices`` for the weights the
weight-matrix regularizers see. Each hook is written once over a member axis (S runs side by side, a stack,
``regnet/stacked``); an ordinary run is its plain case. A new regularizer stacks, or says in one line why not
(``not_stacked``). Regularizers may use the models' building blocks (``regnet.models.init``,
``SparseConv2d``); models never import regularizers.
"""

from regnet.regularizers.base import Regularizer, weight_matrices
from regnet.regularizers.jacobian import jacobian_penalty
from regnet.regularizers.svb import svb_project_

__all__ = ["Regularizer", "jacobian_penalty", "svb_project_", "weight_matrices"]
