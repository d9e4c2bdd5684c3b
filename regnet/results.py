"""``results.json``: one per run, the record analysis reads. Written atomically (temp file + rename).

Schema (README, "Outputs"): model, data, reg (list), variant, seed, max_epochs, global_step, test_acc,
test_loss, val_acc, wall_time_s, train_images_per_s, resumed_from_step, status, regnet_version, git_commit,
plus everything else training measured under ``metrics``, and the resolved config under ``config``.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

RESULTS = "results.json"
LAST_CHECKPOINT = "checkpoints/last.ckpt"  # what a rerun resumes from and analysis loads, relative to the run dir


def temp_beside(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """A new temporary file (fd, name) in ``path``'s folder, to be renamed over ``path``. Its mode is what
    ``open`` would give a new file (0666 less the umask; mkstemp's 0600 would hide outputs from colleagues)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    mask = os.umask(0)
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)
    return fd, tmp


def write_atomic(path: str | os.PathLike, text: str | bytes) -> None:
    """Write ``text`` (or bytes: a PNG, a torch.save) to ``path`` so readers see the old file or the new one,
    never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(path)
    try:
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_results(run_dir: str | os.PathLike, results: dict[str, Any]) -> Path:
    path = Path(run_dir) / RESULTS
    write_atomic(path, json.dumps(results, indent=2, sort_keys=False, default=str) + "\n")
    return path


def read_results(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(run_dir) / RESULTS
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def git_commit() -> str | None:
    """The commit of the regnet checkout, if regnet runs from one."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
