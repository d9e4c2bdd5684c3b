"""Exclusive advisory file locks (``flock``) between the processes of one machine or a shared file system.

The kernel drops a flock when its process dies, SIGKILL included, so a lock never outlives its holder. Used
for a run being trained (:class:`regnet.lifecycle.RunLifecycle`) and for a dataset being fetched
(:meth:`regnet.data.base.ImageDataModule.prepare_data`).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive(path: Path, wait: bool = True) -> Iterator[tuple[bool, str]]:
    """Hold an exclusive flock on ``path`` for the block, with this process's pid written in it. Yields
    (held, owner): held is False only with ``wait=False`` while another process holds it, owner then that
    process's pid ("" if unknown). Where the file cannot be created or locked (a read-only folder, a file
    system without flock) the block runs unlocked, with held True: nothing else could be serialised there."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a+")
    except OSError:
        yield True, ""
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            yield False, f.read().strip()
            return
        except OSError:
            yield True, ""
            return
        try:
            f.truncate(0)
            f.write(f"{os.getpid()}\n")
            f.flush()
            yield True, ""
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
