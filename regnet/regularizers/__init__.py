"""Regularizers: one file each, one YAML each in ``conf/reg/``.

See ``base.Regularizer`` for the hooks a regularizer can use.
"""

from regnet.regularizers.base import Regularizer
from regnet.regularizers.jacobian import jacobian_penalty
from regnet.regularizers.svb import orthogonal_init_, svb_project_

__all__ = ["Regularizer", "jacobian_penalty", "orthogonal_init_", "svb_project_"]
