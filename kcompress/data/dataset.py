"""The in-memory image-classification dataset every kcompress tool consumes."""

from __future__ import annotations

import dataclasses

import numpy as np

from kcompress._keras import tf
from kcompress.validation import check_int, check_number


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test splits as float32 NHWC images in [0, 1] and integer labels.

    Attributes:
        name: dataset name, e.g. ``"mnist"``.
        x_train, y_train, x_test, y_test: NumPy arrays; images are float32 with
            shape ``(n, height, width, channels)``, labels int64 with shape ``(n,)``.
        num_classes: number of classes.
        source: where the arrays came from (a file path or ``"tfds:<name>"``).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: str = ""

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image, ``(height, width, channels)``."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_train(self) -> int:
        """Number of training samples."""
        return len(self.x_train)

    @property
    def num_test(self) -> int:
        """Number of test samples."""
        return len(self.x_test)

    @property
    def streams(self) -> bool:
        """Whether the splits stream from ``tf.data`` (:class:`StreamingDataset`) instead of arrays."""
        return False

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={len(self.x_train)}, test={len(self.x_test)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes})"
        )

    def representative(self, n: int = 200, seed: int = 0) -> np.ndarray:
        """Returns ``n`` training images drawn without replacement, for calibration.

        Args:
            n: number of samples, 1 <= n <= len(x_train).
            seed: seed of the draw, so calibration is reproducible.

        Returns:
            float32 array of shape ``(n, *input_shape)``.
        """
        check_int("n", n, 1, len(self.x_train))
        idx = np.random.default_rng(seed).choice(len(self.x_train), size=int(n), replace=False)
        return self.x_train[np.sort(idx)]

    def take(self, train: int | None = None, test: int | None = None) -> Dataset:
        """Returns a copy holding only the first ``train`` / ``test`` samples (for quick runs)."""
        for argname, value, limit in (("train", train, len(self.x_train)), ("test", test, len(self.x_test))):
            check_int(argname, value, 1, limit, allow_none=True)
        return dataclasses.replace(
            self,
            x_train=self.x_train[:train],
            y_train=self.y_train[:train],
            x_test=self.x_test[:test],
            y_test=self.y_test[:test],
        )

    def train(self, batch_size: int = 128, shuffle: bool = True, seed: int | None = 0) -> tf.data.Dataset:
        """A batched, prefetching ``tf.data`` pipeline over the training split."""
        _check_batch_size(batch_size)
        ds = tf.data.Dataset.from_tensor_slices((self.x_train, self.y_train))
        if shuffle:
            ds = ds.shuffle(min(len(self.x_train), 60_000), seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def test(self, batch_size: int = 256) -> tf.data.Dataset:
        """A batched, prefetching ``tf.data`` pipeline over the test split, in order."""
        _check_batch_size(batch_size)
        ds = tf.data.Dataset.from_tensor_slices((self.x_test, self.y_test))
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def test_batches(self, batch_size: int = 256, max_samples: int | None = None):
        """Yields the test split as ``(images, labels)`` NumPy batches, in order (at most ``max_samples``)."""
        _check_batch_size(batch_size)
        n = self.num_test if max_samples is None else min(self.num_test, max_samples)
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            yield self.x_test[start:stop], self.y_test[start:stop]

    def validation_batches(self, batch_size: int = 256, fraction: float = 0.1, max_samples: int | None = None):
        """Yields the held-out tail of the training split as ``(images, labels)`` NumPy batches, in order.

        The tail is the last ``fraction`` of the training split, the samples
        ``model.fit(..., validation_split=fraction)`` (and :func:`kcompress.models.fit`)
        hold out; at most its first ``max_samples``.
        """
        start, stop = _validation_range(self, batch_size, fraction, max_samples)
        for first in range(start, stop, batch_size):
            last = min(stop, first + batch_size)
            yield self.x_train[first:last], self.y_train[first:last]


def _validation_range(dataset, batch_size, fraction, max_samples) -> tuple[int, int]:
    """``(first, stop)`` indices of the validation tail in the training split, arguments checked."""
    _check_batch_size(batch_size)
    fraction = check_number("fraction", fraction, 0.0, 1.0, low_open=True, high_open=True)
    max_samples = check_int("max_samples", max_samples, 1, allow_none=True)
    n = dataset.num_train
    split_at = int(n * (1.0 - fraction))  # the same rounding as Keras' validation_split
    if split_at >= n:
        raise ValueError(f"dataset {dataset.name!r} has {n} training images: too few to hold out {fraction:.0%}.")
    return split_at, n if max_samples is None else min(n, split_at + max_samples)


def _check_batch_size(batch_size) -> None:
    check_int("batch_size", batch_size, minimum=1)
