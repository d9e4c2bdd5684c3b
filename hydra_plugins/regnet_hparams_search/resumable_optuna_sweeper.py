"""``hydra.sweeper._target_: hydra_plugins.regnet_hparams_search.resumable_optuna_sweeper.ResumableOptunaSweeper``
(``conf/hparams_search/``): hydra-optuna-sweeper's OptunaSweeper, resuming an interrupted study
(:mod:`regnet.hparams_search.sweeper`). Without hydra-optuna-sweeper (``pip install 'regnet[search]'``) this module
defines nothing, so Hydra's plugin scan stays quiet."""

from __future__ import annotations

try:
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
except ImportError:  # regnet[search] not installed
    OptunaSweeper = None

if OptunaSweeper is not None:

    class ResumableOptunaSweeper(OptunaSweeper):
        """:class:`OptunaSweeper` (same settings) whose study resumes where an interrupted search stopped."""

        def sweep(self, arguments: list[str]) -> None:
            from regnet.hparams_search.sweeper import prepare

            prepare(self.sweeper)
            return super().sweep(arguments)
