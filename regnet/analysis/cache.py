"""Per-run cache of analysis records, so an interrupted or extended ``regnet.analyze`` picks up where it was.

The decision planes of a 30-LeNet sweep take most of an hour on a 2-core CPU (benchmarks/RESULTS.md;
ResNet-18s much longer). Each run's records are saved as soon as they are computed. The key holds the run (its
path below the sweep, its checkpoint's size and modification time) and every parameter the records depend on.
A later call with the same key loads the records instead of recomputing them: after Ctrl-C or a preempted job,
or when seeds are added to a sweep. A retrained run (new checkpoint) or different settings give a new key.
Files are written atomically (``write_atomic``); one that cannot be read is recomputed. The key also holds
regnet's version, so an upgrade recomputes; bump ``VERSION`` when the meaning of a record changes between releases.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from regnet import __version__
from regnet.files import write_atomic
from regnet.results import LAST_CHECKPOINT

VERSION = 1
T = TypeVar("T")


def run_key(run_dir: str | Path, root: str | Path) -> dict[str, Any]:
    """The run's identity: its path relative to the sweep ``root`` (so a moved sweep keeps its cache) and its
    last checkpoint's size and modification time (so retraining invalidates it)."""
    run_dir, root = Path(run_dir).resolve(), Path(root).resolve()
    ckpt = run_dir / LAST_CHECKPOINT
    stat = ckpt.stat() if ckpt.is_file() else None
    try:
        rel = run_dir.relative_to(root).as_posix()
    except ValueError:
        rel = run_dir.as_posix()
    return {"run": rel, "checkpoint": [stat.st_size, stat.st_mtime_ns] if stat else None}


def cached(cache_dir: str | Path | None, kind: str, key: dict[str, Any], compute: Callable[[], T]) -> tuple[T, bool]:
    """(``compute()`` or its saved value, whether it came from the cache). No caching when ``cache_dir`` is
    None. ``key``: JSON-serialisable, the run's :func:`run_key` and the parameters."""
    if cache_dir is None:
        return compute(), False
    full = {"version": VERSION, "regnet": __version__, "kind": kind} | key
    text = json.dumps(full, sort_keys=True, default=str)
    path = Path(cache_dir) / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:20]}.pt"
    if path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("key") == text:
                return saved["value"], True
        except Exception:  # noqa: BLE001 — unreadable or foreign file: recompute and overwrite it
            pass
    value = compute()
    buffer = io.BytesIO()
    torch.save({"key": text, "value": value}, buffer)
    write_atomic(path, buffer.getvalue())
    return value, False
