"""CIFAR-format (pickled python batches) datasets through torchvision: CIFAR-10, CIFAR-100."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
import torchvision
from torch import Tensor

from regnet.data.base import CorruptDatasetError, ImageDataModule, missing


class CifarDataModule(ImageDataModule):
    torchvision_class: type = torchvision.datasets.CIFAR10
    in_channels, image_size = 3, 32

    def __init__(self, *args, verify_checksums: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.verify_checksums = verify_checksums

    def _dataset_class(self) -> type:
        """torchvision's class; without checksum verification files need only exist (small test files)."""
        if self.verify_checksums:
            return self.torchvision_class
        base = self.torchvision_class

        class Unverified(base):
            def _check_integrity(self) -> bool:
                folder = Path(self.root) / self.base_folder
                return all((folder / name).is_file() for name, _ in self.train_list + self.test_list)

            def _load_meta(self) -> None:  # torchvision's also checks the meta file's md5
                with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
                    self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
                self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

        return Unverified

    @property
    def folder(self) -> Path:
        return self.root / self.torchvision_class.base_folder

    def _expected(self) -> str:
        names = [n for n, _ in self.torchvision_class.train_list + self.torchvision_class.test_list]
        return ", ".join(names)

    def locate(self) -> None:
        cls = self._dataset_class()
        try:
            cls(str(self.root), train=False, download=self.download)
        except Exception as err:
            if self.folder.is_dir() and any(self.folder.iterdir()):
                raise CorruptDatasetError(
                    f"{self.name} files under {self.folder} are incomplete or fail their checksums ({err}): "
                    "delete them and download again, or set data.verify_checksums=false for hand-made files"
                ) from err
            raise missing(self.name, self.folder, self._expected()) from err

    def load(self, train: bool, download: bool) -> tuple[Tensor, Tensor]:
        try:
            ds = self._dataset_class()(str(self.root), train=train, download=False)
            images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) → (N, 3, 32, 32)
            labels = torch.as_tensor(ds.targets, dtype=torch.long)
        except Exception as err:
            raise CorruptDatasetError(
                f"{self.name} files under {self.folder} cannot be read ({type(err).__name__}: {err}): "
                "delete them and download again"
            ) from err
        if len(images) != len(labels) or len(labels) == 0:
            raise CorruptDatasetError(f"{self.name} files under {self.folder} are inconsistent: download again")
        return images, labels
