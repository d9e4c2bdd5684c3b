"""regnet: how regularizers change what image classifiers learn.

The training path is ``regnet/train.py`` (Hydra entry point) + ``regnet/module.py``
(the LightningModule). ``conf/`` mirrors this package one-to-one.
"""

from regnet.config import register_resolvers

__version__ = "0.1.0"

register_resolvers()
