"""The study's storage, as the sweeper and every trial's job open it (``hydra.sweeper.storage``).

A trial's job reports its per-epoch values to the study from wherever it runs (a joblib worker, a SLURM job, a
run with ``hydra.job.chdir=true``), so the sweeper hands it the storage URL with the SQLite file's path made
absolute (:func:`absolute_url`, against the directory the search was started from). SQLite waits up to
``SQLITE_TIMEOUT_S`` for a lock another trial holds instead of its default 5 s: trials of a batch write to the same
file at once.
"""

from __future__ import annotations

import os
from pathlib import Path

import optuna
from sqlalchemy.engine import make_url

SQLITE_TIMEOUT_S = 60


def _sqlite_file(url) -> str | None:
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return url.database


def absolute_url(storage: str | None) -> str | None:
    """``storage`` with a relative SQLite path made absolute (against the current directory); other URLs as given.

    >>> absolute_url("sqlite:///outputs/s/optuna.db") == f"sqlite:///{os.getcwd()}/outputs/s/optuna.db"
    True
    """
    if storage is None:
        return None
    url = make_url(str(storage))
    path = _sqlite_file(url)
    if path is None or os.path.isabs(path):
        return str(storage)
    return url.set(database=os.path.abspath(os.path.expanduser(path))).render_as_string(hide_password=False)


def open_storage(storage: str) -> optuna.storages.BaseStorage:
    """Optuna's RDB storage at ``storage`` (a URL); its SQLite file's folder is created."""
    url = make_url(storage)
    engine_kwargs = {}
    if (path := _sqlite_file(url)) is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    return optuna.storages.RDBStorage(storage, engine_kwargs=engine_kwargs)
