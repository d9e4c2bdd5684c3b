"""Atomic file writes: readers see the old file or the new one, never a partial one.

Every file regnet writes that another process may read (``results.json``, ``metrics.csv``, tables, figures,
analysis caches, checkpoints) goes through :func:`replacing`: a temporary file beside the target, flushed and
fsync'ed, then renamed over it. A kill or a full disk leaves the old file (or none) and no temporary file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def temp_beside(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """A new temporary file (fd, name) in ``path``'s folder, to be renamed over ``path``. Its mode is what
    ``open`` would give a new file (0666 less the umask; mkstemp's 0600 would hide outputs from colleagues)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    mask = os.umask(0)
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)
    return fd, tmp


@contextmanager
def replacing(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator[IO]:
    """``with replacing(path) as f: f.write(...)``: ``f`` is a temporary file beside ``path`` that replaces
    it when the block ends without an error; on any error (a kill cannot run this, but leaves only the hidden
    temporary file) the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(path, suffix=path.suffix + ".tmp")
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, text: str | bytes) -> None:
    """Write ``text`` (or bytes: a PNG, a torch.save) to ``path`` atomically (:func:`replacing`)."""
    with replacing(path, "wb" if isinstance(text, bytes) else "w") as f:
        f.write(text)
