"""``hydra.sweeper._target_: hydra_plugins.regnet_hparams_search.optuna_sweeper.OptunaSweeper``
(``conf/hydra/sweeper/regnet_optuna.yaml``): regnet's Optuna sweeper, :mod:`regnet.hparams_search.sweeper`. Without
Optuna (``pip install 'regnet[search]'``) this module defines nothing, so Hydra's plugin scan stays quiet."""

from __future__ import annotations

from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper

try:
    import optuna  # noqa: F401
except ImportError:  # regnet[search] not installed
    optuna = None

if optuna is not None:

    class OptunaSweeper(Sweeper):
        """A Hydra sweeper: asks Optuna for ``n_jobs`` trials at a time and runs them on the configured launcher."""

        def __init__(self, **settings: Any):
            self.settings = settings

        def setup(self, *, hydra_context, task_function, config) -> None:
            self.config = config
            self.launcher = Plugins.instance().instantiate_launcher(
                config=config, hydra_context=hydra_context, task_function=task_function
            )

        def sweep(self, arguments: list[str]) -> None:
            from regnet.hparams_search.sweeper import OptunaSearch

            OptunaSearch(self.config, self.launcher, self.settings).run(arguments)
