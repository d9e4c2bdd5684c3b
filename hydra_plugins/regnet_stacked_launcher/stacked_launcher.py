"""Hydra instantiates launchers only from the ``hydra_plugins`` package; this names regnet's stacked launcher
there (``conf/hydra/launcher/stacked.yaml``). The launcher itself is ``regnet/stacked/launcher.py``."""

from regnet.stacked.launcher import StackedLauncher as _StackedLauncher


class StackedLauncher(_StackedLauncher):
    pass
