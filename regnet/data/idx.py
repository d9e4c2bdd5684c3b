"""MNIST-format (idx) datasets through torchvision's own readers: MNIST, Fashion-MNIST."""

from __future__ import annotations

import gzip
import shutil
import zlib
from pathlib import Path

import torchvision
from torch import Tensor

from regnet.data.base import CorruptDatasetError, ImageDataModule, missing


class IdxDataModule(ImageDataModule):
    """A dataset torchvision reads from ``<root>/<Folder>/raw/*-idx?-ubyte``."""

    torchvision_class: type = torchvision.datasets.MNIST
    #: other folders holding the four ``*.gz`` files (e.g. a distribution package), searched when offline
    local_sources: tuple[str, ...] = ()
    num_classes, in_channels, image_size = 10, 1, 28

    @property
    def raw_folder(self) -> Path:
        return self.root / self.torchvision_class.__name__ / "raw"

    def locate(self) -> None:
        if not self._exists():
            self._copy_local_source()
        if not self._exists():
            self._download()

    def _exists(self) -> bool:
        return all((self.raw_folder / name).is_file() for name in self._file_names())

    def _file_names(self) -> list[str]:
        return [Path(url).stem for url, _ in self.torchvision_class.resources]

    def _copy_local_source(self) -> None:
        for source in map(Path, self.local_sources):
            if all((source / f"{name}.gz").is_file() for name in self._file_names()):
                self.raw_folder.mkdir(parents=True, exist_ok=True)
                for name in self._file_names():
                    self._decompress(source / f"{name}.gz", self.raw_folder / name)
                return

    def _decompress(self, gz: Path, target: Path) -> None:
        """``gz`` decompressed into ``target`` through a temporary file, which never outlives a failure: a
        truncated or damaged archive names itself and leaves nothing behind."""
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except (gzip.BadGzipFile, EOFError, zlib.error) as err:  # the archive, not the disk (a full disk: OSError)
            tmp.unlink(missing_ok=True)
            raise CorruptDatasetError(
                f"{self.name}: {gz} cannot be decompressed ({type(err).__name__}: {err}); it is "
                "truncated or damaged: replace it, or delete it and download again"
            ) from err
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        tmp.replace(target)

    def _download(self) -> None:
        expected = ", ".join(self._file_names())
        if not self.download:
            raise missing(self.name, self.raw_folder, expected, "or set data.download=true")
        try:
            self.torchvision_class(str(self.root), train=True, download=True)
        except Exception as err:  # torchvision raises RuntimeError/URLError/OSError when offline
            raise missing(self.name, self.raw_folder, expected) from err

    def load(self, train: bool, download: bool) -> tuple[Tensor, Tensor]:
        if not self._exists():
            raise missing(self.name, self.raw_folder, ", ".join(self._file_names()))
        try:
            ds = self.torchvision_class(str(self.root), train=train, download=False)
            images, labels = ds.data, ds.targets
        except Exception as err:
            raise CorruptDatasetError(
                f"{self.name} files under {self.raw_folder} cannot be read ({type(err).__name__}: {err}): "
                "delete them and download again"
            ) from err
        if images.ndim != 3 or len(images) != len(labels) or len(labels) == 0:
            raise CorruptDatasetError(
                f"{self.name} files under {self.raw_folder} are inconsistent "
                f"(images {tuple(images.shape)}, labels {tuple(labels.shape)}): delete them and download again"
            )
        return images.unsqueeze(1).contiguous(), labels.long()
