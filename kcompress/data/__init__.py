"""Datasets: ``load(name)`` returns a :class:`Dataset` of float32 NHWC images in [0, 1].

In-memory arrays are the fast default; a :class:`StreamingDataset` (``load_tfrecord``,
``from_tfrecord``, ``from_tfds``, ``from_tf_data``) streams splits that do not fit in memory.
"""

from kcompress.data.dataset import Dataset
from kcompress.data.loading import DATASETS, DataNotFoundError, load
from kcompress.data.streaming import (
    NotInMemoryError,
    StreamingDataset,
    from_tf_data,
    from_tfds,
    from_tfrecord,
    load_tfrecord,
    save_tfrecord,
)

__all__ = [
    "DATASETS", "DataNotFoundError", "Dataset", "NotInMemoryError", "StreamingDataset", "from_tf_data", "from_tfds",
    "from_tfrecord", "load", "load_tfrecord", "save_tfrecord",
]
