"""Hydra instantiates launchers only from the ``hydra_plugins`` package; this names regnet's SLURM launcher there
(``conf/hydra/launcher/slurm.yaml``, ``slurm_cpu.yaml``). The launcher itself is ``regnet/slurm.py``; it needs
hydra-submitit-launcher (``regnet[slurm]``): without it there is nothing to name, and Hydra's plugin scan, which
imports this module for every command, must not fail or warn."""

from importlib.util import find_spec

if find_spec("submitit") is not None and find_spec("hydra_plugins.hydra_submitit_launcher") is not None:
    from regnet.slurm import SlurmLauncher as _SlurmLauncher

    class SlurmLauncher(_SlurmLauncher):
        pass
