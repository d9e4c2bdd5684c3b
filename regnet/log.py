"""regnet's log lines: Python ``logging`` under the ``regnet`` logger, written by rank 0 only.

Inside a Hydra job the root logger's handlers (Hydra's ``job_logging``) put every line on the console and in
``<run dir>/train.log``; outside one (tests, notebooks) a console handler shows INFO lines on stderr.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from lightning.fabric.utilities.rank_zero import rank_zero_only


class _RankZero(logging.Filter):
    """Drop records on ranks other than 0 of a distributed run (Lightning sets ``rank_zero_only.rank``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(rank_zero_only, "rank", 0) == 0


class _UnlessConfigured(logging.StreamHandler):
    """stderr, only while nobody configured the root logger (Hydra's job logging does, with a file too).

    The stream is whatever ``sys.stderr`` is when a line is written, not when regnet was imported: a notebook
    kernel or a test runner that swaps stderr (and closes the old one) still gets the line."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ sets it; the property above always wins
        pass

    def emit(self, record: logging.LogRecord) -> None:
        if not logging.getLogger().handlers:
            super().emit(record)


_REGNET = logging.getLogger("regnet")
_REGNET.setLevel(logging.INFO)
_FORMAT = logging.Formatter("[regnet] %(message)s")
_CONSOLE = _UnlessConfigured()
_CONSOLE.setFormatter(_FORMAT)
_REGNET.addHandler(_CONSOLE)


@contextmanager
def to_stderr() -> Iterator[None]:
    """While a command-line tool outside Hydra runs (``python -m regnet.analyze``): regnet's lines on stderr as
    ``[regnet] <message>``, whatever else configured the root logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_FORMAT)
    propagate = _REGNET.propagate
    _REGNET.removeHandler(_CONSOLE)
    _REGNET.addHandler(handler)
    _REGNET.propagate = False
    try:
        yield
    finally:
        _REGNET.removeHandler(handler)
        _REGNET.addHandler(_CONSOLE)
        _REGNET.propagate = propagate


def get_logger(name: str) -> logging.Logger:
    """The logger for a regnet module (``get_logger(__name__)``), rank-zero aware. A module run as
    ``python -m regnet.x`` is named ``__main__``; its logger is ``regnet.x``, so its lines reach regnet's handlers."""
    if name == "__main__" and (spec := getattr(sys.modules["__main__"], "__spec__", None)) is not None:
        name = spec.name
    logger = logging.getLogger(name)
    if not any(isinstance(f, _RankZero) for f in logger.filters):
        logger.addFilter(_RankZero())
    return logger
