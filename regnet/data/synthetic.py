"""Synthetic datasets written in the real on-disk formats torchvision reads (idx for MNIST-like, pickled
batches for CIFAR), so tests, benchmarks and smoke runs exercise the real DataModules without a download.
Images are class-dependent patterns plus noise, so a few training steps already beat chance.

    from regnet.data.synthetic import write_idx_dataset
    write_idx_dataset("/tmp/data", "MNIST")   # then: python -m regnet.train data.root=/tmp/data
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np


def _images(n: int, classes: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n).astype(np.uint8)
    protos = np.random.default_rng(1234).integers(0, 256, size=(classes, *shape))
    noise = rng.normal(0, 40, size=(n, *shape))
    images = np.clip(protos[labels] * 0.8 + noise, 0, 255).astype(np.uint8)
    return images, labels


def _write_idx(path: Path, array: np.ndarray) -> None:
    magic = {1: 0x0801, 3: 0x0803}[array.ndim]
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def write_idx_dataset(root: str | Path, folder: str = "MNIST", n_train: int = 256, n_test: int = 128) -> Path:
    """``<root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` with 28×28 images, 10 classes."""
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = _images(n, 10, (28, 28), seed)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return raw


def write_cifar_dataset(root: str | Path, classes: int = 10, n_train: int = 250, n_test: int = 100) -> Path:
    """CIFAR-10 (``cifar-10-batches-py``: 5 data batches, test batch, meta) or CIFAR-100
    (``cifar-100-python``: train, test, meta) pickles with 32×32×3 images."""
    label_key = "labels" if classes == 10 else "fine_labels"
    folder = Path(root) / ("cifar-10-batches-py" if classes == 10 else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)

    def dump(name: str, n: int, seed: int) -> None:
        images, labels = _images(n, classes, (3, 32, 32), seed)
        batch = {"data": images.reshape(n, -1), label_key: labels.tolist(), "filenames": [f"{i}.png" for i in range(n)]}
        if classes == 100:
            batch["coarse_labels"] = (labels // 5).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)

    if classes == 10:
        for i in range(1, 6):
            dump(f"data_batch_{i}", n_train // 5, 10 + i)
        dump("test_batch", n_test, 1)
        meta = {"label_names": [f"class{i}" for i in range(10)]}
        meta_name = "batches.meta"
    else:
        dump("train", n_train, 10)
        dump("test", n_test, 1)
        meta = {
            "fine_label_names": [f"class{i}" for i in range(100)],
            "coarse_label_names": [f"c{i}" for i in range(20)],
        }
        meta_name = "meta"
    with open(folder / meta_name, "wb") as f:
        pickle.dump(meta, f)
    return folder
