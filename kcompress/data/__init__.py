"""Datasets: ``load(name)`` returns a :class:`Dataset` of float32 NHWC images in [0, 1]."""

from kcompress.data.dataset import Dataset
from kcompress.data.loading import DATASETS, DataNotFoundError, load

__all__ = ["DATASETS", "DataNotFoundError", "Dataset", "load"]
