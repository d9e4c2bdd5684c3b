"""``results.json``: one per run, the record analysis reads. Written atomically (temp file + rename).

Schema (README, "Outputs"): model, data, reg (list), variant, seed, max_epochs, global_step, test_acc,
test_loss, val_acc, wall_time_s, train_images_per_s, resumed_from_step, status, regnet_version, git_commit,
plus everything else training measured under ``metrics``, and the resolved config under ``config``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from regnet.files import write_atomic

RESULTS = "results.json"
LAST_CHECKPOINT = "checkpoints/last.ckpt"  # what a rerun resumes from and analysis loads, relative to the run dir


def write_results(run_dir: str | os.PathLike, results: dict[str, Any]) -> Path:
    path = Path(run_dir) / RESULTS
    write_atomic(path, json.dumps(results, indent=2, sort_keys=False, default=str) + "\n")
    return path


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
