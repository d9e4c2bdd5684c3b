"""Datasets as LightningDataModules: one file each, one YAML each in ``conf/data/``."""

from regnet.data.base import CorruptDatasetError, DatasetNotFoundError, ImageDataModule

__all__ = ["CorruptDatasetError", "DatasetNotFoundError", "ImageDataModule"]
