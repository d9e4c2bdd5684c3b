"""Shared fixtures: a data root holding every dataset in its real on-disk format, tiny; config composition."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import regnet  # noqa: F401  (registers the config resolvers)
from regnet.data.synthetic import write_cifar_dataset, write_idx_dataset

CONF = Path(__file__).resolve().parents[1] / "conf"
REPO = CONF.parent

if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: the N workers share the cores, one torch thread each
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # and so do the runs a test starts in a subprocess


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_idx_dataset(root, "MNIST")
    write_idx_dataset(root, "FashionMNIST")
    write_cifar_dataset(root, classes=10)
    write_cifar_dataset(root, classes=100)
    return root


def compose_cfg(overrides: list[str] | None = None, return_hydra_config: bool = False):
    """Compose ``conf/train.yaml`` exactly as ``python -m regnet.train`` would."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides or [], return_hydra_config=return_hydra_config)


TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_test_batches=1",
    "trainer.accelerator=cpu",
    "data.batch_size=16",
    "data.eval_batch_size=64",
]


def tiny(*overrides: str, data: str | None = None) -> list[str]:
    """Overrides for a run of a few steps on the tiny datasets (checksums off for hand-made CIFAR files)."""
    extra = [f"data={data}"] if data else []
    if data and data.startswith("cifar"):
        extra.append("data.verify_checksums=false")
    return [*extra, *TINY, *overrides]


@pytest.fixture(scope="session")
def tiny_sweep(data_root, tmp_path_factory) -> Path:
    """A real ``-m`` sweep of 4 tiny LeNet/MNIST runs (reg none|l2 × seed 0|1) for the analysis tests."""
    import subprocess
    import sys

    sweep = tmp_path_factory.mktemp("sweep")
    cmd = [sys.executable, "-m", "regnet.train", "-m", "reg=none,l2", "seed=0,1", f"data.root={data_root}",
           *tiny(data="mnist"), f"hydra.sweep.dir={sweep}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep


def train_cli(args: list[str], data_root: Path, timeout: int = 600, env: dict | None = None):
    """``python -m regnet.train ARGS`` in a subprocess from the repository root, the tiny datasets as its data."""
    import os
    import subprocess
    import sys

    env = {**(os.environ if env is None else env), "REGNET_DATA": str(data_root), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "regnet.train", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)  # fmt: skip


QUIET = ["callbacks.progress_bar.refresh_rate=0", "callbacks.model_summary=null", "callbacks.confusion=null"]


def run_cli(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """``python -m regnet.train ARGS`` in this process: (exit code, stderr)."""
    import os
    import sys

    import regnet.cli
    import regnet.train

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.delenv("REGNET_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", ["regnet.train", *args])
    capsys.readouterr()
    code = 0
    try:
        with regnet.cli.command_line():
            regnet.train.main()
    except SystemExit as exit_:
        code = exit_.code
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)
        os.environ.pop("REGNET_FULL_ERROR", None)
    return code, capsys.readouterr().err


class _TouchOnUnpickle:
    """Unpickling this object calls ``pathlib.Path(marker).touch()``: the stand-in for a hostile pickle."""

    def __init__(self, marker: Path):
        self.marker = Path(marker)

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def write_malicious_checkpoint(path: Path, marker: Path, base: dict | None = None) -> Path:
    """A checkpoint (``base``, by default an empty Lightning-like dict) with one extra entry whose unpickling
    creates ``marker``: loading ``path`` with ``weights_only=False`` runs code, weights-only must refuse it."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = dict(base or {"state_dict": {}, "epoch": 0, "global_step": 1})
    checkpoint["payload"] = _TouchOnUnpickle(marker)
    torch.save(checkpoint, path)
    return path


@pytest.fixture
def malicious_checkpoint(tmp_path) -> tuple[Path, Path]:
    """(checkpoint, marker): a checkpoint whose unpickling would create ``marker`` (which does not exist yet).
    A test asserts ``not marker.exists()`` after whatever it checks has refused the checkpoint."""
    marker = tmp_path / "pwned"
    return write_malicious_checkpoint(tmp_path / "hostile" / "last.ckpt", marker), marker
