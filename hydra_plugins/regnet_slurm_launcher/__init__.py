"""Hydra instantiates launchers only from the ``hydra_plugins`` package; this names regnet's SLURM launcher there
(``conf/hydra/launcher/slurm.yaml``, ``slurm_cpu.yaml``). The launcher itself is ``regnet/slurm.py``; it needs
hydra-submitit-launcher (``regnet[slurm]``), without which there is nothing to name."""

try:
    from regnet.slurm import SlurmLauncher as _SlurmLauncher
except ImportError:  # no hydra-submitit-launcher: Hydra's plugin scan must not warn about it
    pass
else:

    class SlurmLauncher(_SlurmLauncher):
        pass
