"""DataModules read torchvision's real file formats, keep splits as uint8 tensors, batch on the device."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
import torchvision
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from regnet.data.base import CorruptDatasetError, DatasetNotFoundError
from regnet.data.batches import TensorBatches
from regnet.data.fashion_mnist import FashionMNIST
from regnet.data.mnist import MNIST
from regnet.data.synthetic import write_idx_dataset
from regnet.errors import one_line, options
from regnet.models.lenet import LeNet
from regnet.module import RegNetModule
from tests.conftest import compose_cfg, tiny

SIZES = {"mnist": (1, 28, 10), "fashion_mnist": (1, 28, 10), "cifar10": (3, 32, 10), "cifar100": (3, 32, 100)}


@pytest.mark.parametrize("name", options("data"))
def test_datamodule_reads_real_format(name, data_root):
    """Every conf/data YAML composes and its DataModule sets up on tiny files in the real on-disk format."""
    cfg = compose_cfg(
        [
            f"data={name}",
            f"data.root={data_root}",
            "data.val_fraction=0.25",
            "data.download=false",
            *(["data.verify_checksums=false"] if name.startswith("cifar") else []),
        ]
    )
    dm = instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    channels, size, classes = SIZES[name]
    x, y = dm.splits["train"]
    assert x.dtype == torch.uint8 and x.shape[1:] == (channels, size, size)
    assert y.dtype == torch.int64 and int(y.max()) < classes
    n_val = len(dm.splits["val"][1])
    assert n_val == round(0.25 * (n_val + len(y)))
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape[0] == cfg.data.batch_size
    normed, _ = dm.on_after_batch_transfer((images, labels), 0)
    mean = torch.tensor(dm.mean).view(1, -1, 1, 1)
    std = torch.tensor(dm.std).view(1, -1, 1, 1)
    assert torch.allclose(normed, (images.float() / 255 - mean) / std)


def test_missing_files_offline_one_line_error(tmp_path):
    dm = MNIST(root=str(tmp_path), download=False)
    with pytest.raises(DatasetNotFoundError) as err:
        dm.prepare_data()
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "MNIST" / "raw") in message and "data.root" in message


def test_fashion_mnist_found_in_a_local_source(tmp_path):
    """Files from a distribution package folder (gzipped idx) are decompressed under data.root."""
    import gzip

    raw = write_idx_dataset(tmp_path / "src", "X")
    source = tmp_path / "package"
    source.mkdir()
    for f in raw.iterdir():
        (source / f"{f.name}.gz").write_bytes(gzip.compress(f.read_bytes()))

    class Local(FashionMNIST):
        local_sources = (str(source),)

    dm = Local(root=str(tmp_path / "root"), download=False)
    dm.prepare_data()
    dm.setup()
    assert len(dm.splits["train"][1]) == 256
    assert (tmp_path / "root" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def test_truncated_gz_in_a_local_source_names_the_file_and_leaves_no_tmp(tmp_path):
    import gzip

    raw = write_idx_dataset(tmp_path / "src", "X")
    source = tmp_path / "package"
    source.mkdir()
    for f in raw.iterdir():
        packed = gzip.compress(f.read_bytes())
        (source / f"{f.name}.gz").write_bytes(packed[: len(packed) // 2] if "train-images" in f.name else packed)

    class Local(FashionMNIST):
        local_sources = (str(source),)

    dm = Local(root=str(tmp_path / "root"), download=False)
    with pytest.raises(CorruptDatasetError) as err:
        dm.prepare_data()
    message = one_line(err.value)
    assert str(source / "train-images-idx3-ubyte.gz") in message and "truncated or damaged" in message
    assert "\n" not in message
    left = [p.name for p in (tmp_path / "root" / "FashionMNIST" / "raw").iterdir()]
    assert not [n for n in left if n.endswith(".tmp")] and "train-images-idx3-ubyte" not in left


@pytest.mark.parametrize(
    "override,message",
    [
        ("data.pad=-1", "data.pad=-1 is invalid: it must be an integer ≥ 0"),
        ("data.val_fraction=abc", "data.val_fraction='abc' is invalid"),
        ("data.val_seed=-3", "data.val_seed=-3 is invalid: it must be an integer ≥ 0"),
        ("data.download=maybe", "data.download='maybe' is invalid: use true or false"),
        ("data.on_device=2", "data.on_device=2 is invalid: use true or false"),
        ("data.val_on_test=yes", "data.val_on_test='yes' is invalid: use true or false"),
        ("data.val_on_test=true data.val_fraction=0.1", "data.val_on_test=true with data.val_fraction=0.1: validate"),
        ("+data.mean=[0.1,0.2]", "data.mean=[0.1, 0.2] is invalid: give a number per channel (mnist has 1), e.g. data"),
        ("+data.std=[0]", "data.std=[0] is invalid: give a positive number per channel (mnist has 1), e.g. data.std=["),
        ("+data.std=0.5", "data.std=0.5 is invalid: give a positive number per channel"),
        ("data.batch_size=1.5", "data.batch_size=1.5 is invalid: it must be a positive integer"),
        ("data.image_size=32", "data.image_size=32 does not match mnist: it is 28 (pad=0)"),
    ],
)
def test_bad_data_settings_one_line_naming_the_key(override, message, data_root):
    cfg = compose_cfg([*override.split(), f"data.root={data_root}"])
    with pytest.raises(Exception) as err:
        instantiate(cfg.data)
    line = one_line(err.value)
    assert line.startswith(message) and "\n" not in line, line


def test_val_on_test_validates_on_the_test_set_and_a_val_fraction_on_held_out_training_images(data_root):
    def splits(*overrides):
        dm = instantiate(compose_cfg([f"data.root={data_root}", *overrides]).data)
        dm.setup("fit")
        return {k: len(y) for k, (_, y) in dm.splits.items()}, dm

    sizes, _ = splits()
    assert "val" not in sizes
    sizes_on_test, dm = splits("data.val_on_test=true")
    assert sizes_on_test == {**sizes, "val": sizes["test"]}
    assert all(torch.equal(v, t) for v, t in zip(dm.splits["val"], dm.splits["test"], strict=True))
    held_out, _ = splits("data.val_fraction=0.25")
    assert held_out["val"] + held_out["train"] == sizes["train"] and held_out["test"] == sizes["test"]


COPY_SCRIPT = """
import sys, time
from pathlib import Path
from regnet.data.fashion_mnist import FashionMNIST

class Local(FashionMNIST):
    local_sources = (sys.argv[1],)

while not Path(sys.argv[3]).exists():  # start together
    time.sleep(0.001)
Local(root=sys.argv[2], download=False).prepare_data()
"""


@pytest.mark.slow
def test_parallel_jobs_copy_a_local_source_once_without_clashing(tmp_path):
    """The jobs of a parallel sweep prepare the same data root at once (seen: one job's rename of the
    decompressed file failed because another job had already moved the shared temporary file)."""
    import gzip
    import subprocess
    import sys

    from tests.conftest import REPO

    raw = write_idx_dataset(tmp_path / "src", "X", n_train=60_000, n_test=2_000)
    source = tmp_path / "package"
    source.mkdir()
    for f in raw.iterdir():
        (source / f"{f.name}.gz").write_bytes(gzip.compress(f.read_bytes(), compresslevel=1))
    root, go = tmp_path / "root", tmp_path / "go"
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    procs = [subprocess.Popen([sys.executable, "-c", COPY_SCRIPT, str(source), str(root), str(go)], env=env,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]  # fmt: skip
    go.touch()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 3, errors
    copied = sorted(f.name for f in (root / "FashionMNIST" / "raw").iterdir())
    assert copied == sorted(f.name for f in raw.iterdir())  # the four files, no temporary ones left
    for f in raw.iterdir():
        assert (root / "FashionMNIST" / "raw" / f.name).read_bytes() == f.read_bytes()


def test_batches_shuffle_per_epoch_and_shard_by_rank():
    x = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1)
    y = torch.arange(100)
    epoch = {"n": 0}
    batches = TensorBatches(x, y, 10, shuffle=True, seed=3, epoch_fn=lambda: epoch["n"])
    first = torch.cat([b for _, b in batches])
    assert sorted(first.tolist()) == list(range(100)) and first.tolist() != list(range(100))
    assert torch.equal(first, torch.cat([b for _, b in batches]))  # same (seed, epoch): same order
    epoch["n"] = 1
    assert not torch.equal(first, torch.cat([b for _, b in batches]))
    ranks = [torch.cat([b for _, b in TensorBatches(x, y, 7, shuffle=True, rank=r, world_size=3)]) for r in range(3)]
    assert all(len(r) == 33 for r in ranks) and len(set(torch.cat(ranks).tolist())) == 99
    assert len(TensorBatches(x, y, 7, shuffle=True, rank=0, world_size=3)) == 5


class _RecordLosses(L.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def test_fast_path_matches_plain_dataloader_loop(data_root, tmp_path):
    """The device-resident pipeline gives the same loss trajectory as the studies' plain loop:
    torchvision dataset + ToTensor/Normalize through a DataLoader, hand-written SGD (same order, same init)."""
    cfg = compose_cfg([f"data.root={data_root}", "model.dropout=0", "sched=none", *tiny()])
    dm = instantiate(cfg.data)
    torch.manual_seed(0)
    model = LeNet(dropout=0.0)
    plain_model = copy.deepcopy(model)
    recorder = _RecordLosses()
    trainer = L.Trainer(
        max_steps=5,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder],
        limit_val_batches=0,
    )
    trainer.fit(RegNetModule(model, num_classes=10), datamodule=dm)
    x, y = dm.splits["train"]
    epoch0 = TensorBatches(x, y, dm.batch_size, shuffle=True, seed=dm.seed, epoch_fn=lambda: 0)
    order = epoch0._order()[: 5 * dm.batch_size].tolist()  # the permutation the trainer used in epoch 0

    transform = torchvision.transforms.Compose(
        [torchvision.transforms.ToTensor(), torchvision.transforms.Normalize(dm.mean, dm.std)]
    )
    dataset = torchvision.datasets.MNIST(str(data_root), train=True, transform=transform)
    loader = DataLoader(dataset, batch_size=dm.batch_size, sampler=order)
    optimizer = torch.optim.SGD(plain_model.parameters(), lr=0.1, momentum=0.9)
    plain = []
    for images, labels in loader:
        loss = torch.nn.functional.cross_entropy(plain_model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        plain.append(loss.item())
    assert len(plain) == len(recorder.losses) == 5
    assert torch.allclose(torch.tensor(recorder.losses), torch.tensor(plain), rtol=1e-5, atol=1e-6)
