"""``hydra.sweeper._target_: hydra_plugins.regnet_hparams_search.optuna_sweeper.OptunaSweeper``
(``conf/hydra/sweeper/regnet_optuna.yaml``): regnet's Optuna sweeper, :mod:`regnet.hparams_search.sweeper`. Without
Optuna (``pip install 'regnet[search]'``) a search stops in one line saying so, before anything runs."""

from __future__ import annotations

from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper


class OptunaSweeper(Sweeper):
    """A Hydra sweeper: asks Optuna for ``n_jobs`` trials at a time and runs them on the configured launcher."""

    def __init__(self, **settings: Any):
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise ValueError("hparams_search needs Optuna: pip install 'regnet[search]'") from None
        self.settings = settings

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> None:
        from regnet.hparams_search.sweeper import OptunaSearch

        OptunaSearch(self.config, self.launcher, self.settings).run(arguments)
