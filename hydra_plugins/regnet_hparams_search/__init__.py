"""regnet's Hydra plugin: hydra-optuna-sweeper's sweeper made to resume (Hydra loads sweepers only from the
``hydra_plugins`` namespace; the logic is in :mod:`regnet.hparams_search.sweeper`)."""
