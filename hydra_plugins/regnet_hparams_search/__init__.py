"""regnet's Hydra plugin: the Optuna sweeper (Hydra loads sweepers only from the ``hydra_plugins`` namespace; the
logic is in :mod:`regnet.hparams_search.sweeper`)."""
