"""Datasets that stream from ``tf.data`` (TFRecord files, tensorflow-datasets) instead of arrays.

A :class:`StreamingDataset` is a :class:`~kcompress.data.Dataset` whose splits are
never held in memory: training, validation, calibration and evaluation read them in
batches, so a split may be far larger than RAM. In-memory arrays stay the fast
default (``kcompress.data.load``); use streaming when the data does not fit.

Example:
    >>> kc.data.save_tfrecord(kc.data.load("mnist"), "data/mnist_tfrecord", shards=4)
    >>> ds = kc.data.load_tfrecord("data/mnist_tfrecord")
    >>> ds.num_train, ds.streams
    (60000, True)
    >>> kc.models.fit(model, ds, epochs=2)        # batches stream from the files
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
from absl import logging

from kcompress._files import write_atomic
from kcompress._keras import tf
from kcompress.data.dataset import Dataset, _check_batch_size, _validation_range
from kcompress.validation import check_fraction, check_int

_META = "dataset.json"
_ARRAY_ATTRS = ("x_train", "y_train", "x_test", "y_test")


class NotInMemoryError(ValueError):
    """A streaming dataset was asked for an in-memory array (``x_train`` ...) it does not hold."""


def _check_count(argname, value, allow_none=True):
    return check_int(argname, value, minimum=0, allow_none=allow_none)


def _check_shape(input_shape):
    if (not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3
            or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in input_shape)):
        raise ValueError(f"input_shape must be (height, width, channels) of positive ints, got {input_shape!r}.")
    return tuple(int(d) for d in input_shape)


class StreamingDataset(Dataset):
    """Train and test splits streamed from ``tf.data`` pipelines of single ``(image, label)`` pairs.

    Images come out as float32 ``input_shape`` tensors in [0, 1] (uint8 sources are
    divided by 255, others cast), labels as int64, exactly as the arrays of an
    in-memory :class:`Dataset`. What changes is that nothing reads a whole split:
    ``train``/``fit_splits`` shuffle through a bounded buffer (``shuffle_buffer``
    records, shuffled before decoding when the source is a file), ``test`` and
    ``test_batches`` read in order, and ``representative(n)`` holds ``n`` samples.

    Build one with :func:`from_tf_data`, :func:`from_tfrecord`, :func:`load_tfrecord`
    or :func:`from_tfds`. ``x_train`` & co. raise :class:`NotInMemoryError`; use
    :meth:`to_arrays` when a split does fit in memory.

    Under ``tf.distribute.MultiWorkerMirroredStrategy`` each worker reads every record
    and keeps its share of each global batch (``AutoShardPolicy.DATA``), so every
    worker needs the files and the same ``seed``.

    Args:
        name: dataset name.
        train, test: ``tf.data.Dataset`` of raw elements (e.g. serialized records).
        num_classes: number of classes.
        input_shape: ``(height, width, channels)`` of one decoded image.
        decode: maps one raw element to ``(image, label)``; None when the elements
            already are ``(image, label)`` pairs.
        num_train, num_test: split sizes (None: counted in one pass when first needed).
        source: where the data comes from, for messages.
        shuffle_buffer: records in the training shuffle buffer (what bounds its memory).
    """

    def __init__(self, name: str, train, test, num_classes: int, input_shape, decode=None,
                 num_train: int | None = None, num_test: int | None = None, source: str = "tf.data",
                 shuffle_buffer: int = 10_000):
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}.")
        for argname, value in (("train", train), ("test", test)):
            if not isinstance(value, tf.data.Dataset):
                raise TypeError(f"{argname} must be a tf.data.Dataset of single (image, label) elements, "
                                f"got {type(value).__name__}.")
        check_int("num_classes", num_classes, minimum=2)
        check_int("shuffle_buffer", shuffle_buffer, minimum=1)
        if decode is not None and not callable(decode):
            raise TypeError(f"decode must be None or a callable raw element -> (image, label), got {decode!r}.")
        set_ = object.__setattr__  # the dataclass parent is frozen
        set_(self, "name", name)
        set_(self, "num_classes", int(num_classes))
        set_(self, "source", str(source))
        set_(self, "_shape", _check_shape(input_shape))
        set_(self, "_raw", {"train": train, "test": test})
        set_(self, "_decode", decode)
        set_(self, "_counts", {"train": _check_count("num_train", num_train), "test": _check_count("num_test", num_test)})
        set_(self, "shuffle_buffer", int(shuffle_buffer))
        self._check_elements()

    # ---------------------------------------------------------------- what an in-memory Dataset has

    def __getattr__(self, attr):
        # Only reached for attributes that do not exist: the arrays of an in-memory Dataset.
        if attr in _ARRAY_ATTRS:
            raise NotInMemoryError(
                f"Dataset {self.name!r} streams from {self.source} and holds no {attr} array in memory; "
                f"read it with dataset.train(batch_size) / dataset.fit_splits(...) / dataset.test_batches(...) "
                f"/ dataset.representative(n), or call dataset.to_arrays() if the split fits in memory."
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self._shape

    @property
    def streams(self) -> bool:
        return True

    @property
    def num_train(self) -> int:
        return self._count("train")

    @property
    def num_test(self) -> int:
        return self._count("test")

    def __repr__(self) -> str:
        counts = {k: ("?" if v is None else v) for k, v in self._counts.items()}
        return (f"StreamingDataset(name={self.name!r}, train={counts['train']}, test={counts['test']}, "
                f"input_shape={self.input_shape}, num_classes={self.num_classes}, source={self.source!r})")

    # ---------------------------------------------------------------- internals

    def _count(self, split) -> int:
        if self._counts[split] is None:
            raw = self._raw[split]
            n = int(raw.cardinality())
            if n < 0:  # unknown (files) or infinite: one pass, nothing kept
                if n == tf.data.INFINITE_CARDINALITY:
                    raise ValueError(f"the {split} split of {self.name!r} is infinite (repeat()); pass num_{split}.")
                logging.info("Counting the %s split of %s (one pass; pass num_%s to skip this)", split, self.name, split)
                n = int(raw.reduce(np.int64(0), lambda c, _: c + 1))
            self._counts[split] = n
        return self._counts[split]

    def _decoded(self, ds):
        if self._decode is not None:
            ds = ds.map(self._decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        shape = self._shape

        def normalize(image, label):
            image = tf.convert_to_tensor(image)
            if image.dtype == tf.uint8:
                image = tf.cast(image, tf.float32) / 255.0
            else:
                image = tf.cast(image, tf.float32)
            return tf.reshape(image, shape), tf.cast(tf.reshape(label, []), tf.int64)

        return ds.map(normalize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def _check_elements(self):
        for split, raw in self._raw.items():
            spec = raw.element_spec if self._decode is None else raw.take(0).map(self._decode).element_spec
            if not isinstance(spec, tuple) or len(spec) != 2:
                raise TypeError(f"{split} must yield (image, label) pairs, got elements {spec}.")
            image, label = spec
            if not label.dtype.is_integer or label.shape.num_elements() not in (None, 1):
                raise TypeError(f"{split} labels must be scalar integers, got {label}.")
            if image.dtype not in (tf.uint8, tf.float16, tf.float32, tf.float64):
                raise TypeError(f"{split} images must be uint8 (0..255) or float in [0, 1], got {image.dtype.name}.")
            shape = tuple(image.shape)
            if image.shape.is_fully_defined() and shape != self._shape and shape != self._shape[:2]:
                raise ValueError(f"{split} images have shape {shape}, expected input_shape {self._shape}.")

    def _options(self, ds):
        options = tf.data.Options()
        # Keep the element order of every worker identical and shard the batches: the split into
        # training and validation samples (take/skip) must hold on every worker, which file sharding
        # (each worker reading some files) would break.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        options.deterministic = True
        return ds.with_options(options)

    def _train_stream(self, n, shuffle, seed, skip=0):
        ds = self._raw["train"].skip(skip).take(n) if skip else self._raw["train"].take(n)
        if shuffle:  # shuffled before decoding: the buffer holds raw (e.g. compressed) records
            ds = ds.shuffle(min(self.shuffle_buffer, max(n, 1)), seed=seed, reshuffle_each_iteration=True)
        return self._decoded(ds).apply(tf.data.experimental.assert_cardinality(n))

    # ---------------------------------------------------------------- the Dataset interface

    def train(self, batch_size: int = 128, shuffle: bool = True, seed: int | None = 0) -> tf.data.Dataset:
        """A batched, prefetching pipeline over the training split (shuffled through the buffer)."""
        _check_batch_size(batch_size)
        ds = self._train_stream(self.num_train, shuffle, seed)
        return self._options(ds.batch(batch_size).prefetch(tf.data.AUTOTUNE))

    def fit_splits(self, batch_size: int = 256, validation_split: float = 0.1, shuffle: bool = True,
                   seed: int | None = 0, max_train: int | None = None):
        """``(train, validation)`` batched pipelines: the last ``validation_split`` is held out, as Keras does."""
        _check_batch_size(batch_size)
        validation_split = check_fraction("validation_split", validation_split, high_open=True)
        n = self.num_train if max_train is None else min(self.num_train, _check_count("max_train", max_train, False))
        split_at = int(math.floor(n * (1.0 - validation_split)))
        if split_at < 1:
            raise ValueError(f"dataset {self.name!r} has {n} training samples: none left after validation_split="
                             f"{validation_split}.")
        train = self._options(self._train_stream(split_at, shuffle, seed).batch(batch_size).prefetch(tf.data.AUTOTUNE))
        val = None
        if n - split_at > 0 and validation_split > 0:
            val = self._train_stream(n - split_at, False, None, skip=split_at)
            val = self._options(val.batch(batch_size).prefetch(tf.data.AUTOTUNE))
        return train, val

    def test(self, batch_size: int = 256) -> tf.data.Dataset:
        """A batched, prefetching pipeline over the test split, in order."""
        _check_batch_size(batch_size)
        return self._options(self._decoded(self._raw["test"]).batch(batch_size).prefetch(tf.data.AUTOTUNE))

    def test_batches(self, batch_size: int = 256, max_samples: int | None = None):
        """Yields the test split as ``(images, labels)`` NumPy batches, in order (at most ``max_samples``)."""
        _check_batch_size(batch_size)
        ds = self._decoded(self._raw["test"] if max_samples is None else self._raw["test"].take(max_samples))
        yield from ds.batch(batch_size).prefetch(2).as_numpy_iterator()

    def validation_batches(self, batch_size: int = 256, fraction: float = 0.1, max_samples: int | None = None):
        """Yields the held-out tail of the training split as ``(images, labels)`` NumPy batches, in order.

        The same samples as ``fit_splits(validation_split=fraction)`` holds out; reaching the tail
        reads (without decoding) the records before it.
        """
        start, stop = _validation_range(self, batch_size, fraction, max_samples)
        ds = self._train_stream(stop - start, False, None, skip=start)
        yield from ds.batch(batch_size).prefetch(2).as_numpy_iterator()

    def representative(self, n: int = 200, seed: int = 0) -> np.ndarray:
        """``n`` training images for calibration, drawn through a shuffle buffer of ``max(n, shuffle_buffer)``.

        Only the ``n`` samples (and the buffer of raw records) are held in memory.
        """
        check_int("n", n, minimum=1)
        known = self._counts["train"]
        if known is not None and n > known:
            raise ValueError(f"n must be an int in [1, {known}], got {n!r}.")
        raw = self._raw["train"].shuffle(max(int(n), self.shuffle_buffer), seed=seed, reshuffle_each_iteration=False)
        images = [x for x, _ in self._decoded(raw.take(n)).batch(256).as_numpy_iterator()]
        out = np.concatenate(images) if images else np.zeros((0, *self._shape), np.float32)
        if len(out) < n:
            raise ValueError(f"n must be an int in [1, {len(out)}] (the training split's size), got {n!r}.")
        return out

    def take(self, train: int | None = None, test: int | None = None) -> StreamingDataset:
        """A streaming dataset over only the first ``train`` / ``test`` samples."""
        counts = dict(self._counts)
        raw = dict(self._raw)
        for split, value in (("train", train), ("test", test)):
            if value is None:
                continue
            check_int(split, value, minimum=1)
            raw[split] = raw[split].take(int(value))
            counts[split] = None if counts[split] is None else min(int(value), counts[split])
        return StreamingDataset(self.name, raw["train"], raw["test"], self.num_classes, self._shape, self._decode,
                                counts["train"], counts["test"], self.source, self.shuffle_buffer)

    def to_arrays(self) -> Dataset:
        """Reads both splits into an in-memory :class:`Dataset` (only when they fit in memory)."""
        arrays = {}
        for split in ("train", "test"):
            xs, ys = [], []
            for x, y in self._decoded(self._raw[split]).batch(1024).as_numpy_iterator():
                xs.append(x)
                ys.append(y)
            arrays[split] = (np.concatenate(xs) if xs else np.zeros((0, *self._shape), np.float32),
                             np.concatenate(ys) if ys else np.zeros((0,), np.int64))
        return Dataset(self.name, *arrays["train"], *arrays["test"], self.num_classes, self.source)


def from_tf_data(train, test, *, name: str, num_classes: int, input_shape=None, num_train: int | None = None,
                 num_test: int | None = None, shuffle_buffer: int = 10_000) -> StreamingDataset:
    """A :class:`StreamingDataset` over two ``tf.data`` pipelines of single ``(image, label)`` pairs.

    Args:
        train, test: unbatched ``tf.data.Dataset`` of ``(image, label)``; images uint8 (0..255)
            or float in [0, 1], labels integer class ids.
        name, num_classes: as in :class:`Dataset`.
        input_shape: ``(height, width, channels)``; None: taken from ``train.element_spec``.
        num_train, num_test: split sizes (None: from the cardinality, else counted in one pass).
        shuffle_buffer: training shuffle buffer (elements).

    Example:
        >>> train = tf.data.Dataset.from_generator(gen, output_signature=(tf.TensorSpec((28, 28, 1), tf.uint8),
        ...                                                               tf.TensorSpec((), tf.int64)))
        >>> ds = from_tf_data(train, test, name="digits", num_classes=10)
    """
    if input_shape is None:
        if not isinstance(train, tf.data.Dataset):
            raise TypeError(f"train must be a tf.data.Dataset of single (image, label) elements, got {type(train).__name__}.")
        spec = train.element_spec
        shape = spec[0].shape if isinstance(spec, tuple) and len(spec) == 2 else None
        if shape is None or not shape.is_fully_defined() or shape.rank not in (2, 3):
            raise ValueError(f"input_shape is needed: the train images' shape is not fully known ({spec}).")
        input_shape = tuple(shape) if shape.rank == 3 else (*shape, 1)
    return StreamingDataset(name, train, test, num_classes, input_shape, None, num_train, num_test,
                            source="tf.data", shuffle_buffer=shuffle_buffer)


def _record_decoder(input_shape, image_key, label_key):
    features = {image_key: tf.io.FixedLenFeature([], tf.string), label_key: tf.io.FixedLenFeature([], tf.int64)}
    raw_len = int(np.prod(input_shape))
    channels = int(input_shape[-1])

    def decode(record):
        parsed = tf.io.parse_single_example(record, features)
        data = parsed[image_key]

        def raw():
            return tf.reshape(tf.io.decode_raw(data, tf.uint8), input_shape)

        def encoded():  # PNG / JPEG / GIF / BMP
            image = tf.io.decode_image(data, channels=channels, expand_animations=False)
            return tf.reshape(tf.image.resize_with_crop_or_pad(image, input_shape[0], input_shape[1]), input_shape)

        image = tf.cond(tf.strings.length(data) == raw_len, raw, encoded)
        return image, parsed[label_key]

    return decode


def from_tfrecord(train_files, test_files, *, name: str, num_classes: int, input_shape, num_train: int | None = None,
                  num_test: int | None = None, image_key: str = "image", label_key: str = "label",
                  shuffle_buffer: int = 10_000) -> StreamingDataset:
    """A :class:`StreamingDataset` over TFRecord files of ``tf.train.Example`` records.

    Each record holds ``image_key``: the image as raw uint8 bytes (``height*width*channels``
    of them, as :func:`save_tfrecord` writes) or an encoded PNG/JPEG, and ``label_key``: an
    int64 class id.

    Args:
        train_files, test_files: a file path, a glob pattern, or a list of them.
        name, num_classes, input_shape: as in :class:`Dataset`.
        num_train, num_test: record counts (None: counted in one pass when first needed).
        image_key, label_key: feature names.
        shuffle_buffer: serialized records in the training shuffle buffer.

    Raises:
        ValueError: no file matches, or bad counts / shape.
    """
    files = {}
    for argname, value in (("train_files", train_files), ("test_files", test_files)):
        patterns = [value] if isinstance(value, (str, os.PathLike)) else value
        if not isinstance(patterns, (list, tuple)) or not patterns:
            raise TypeError(f"{argname} must be a path, a glob pattern or a list of them, got {value!r}.")
        matched = sorted({f for p in patterns for f in tf.io.gfile.glob(os.fspath(p))})
        if not matched:
            raise ValueError(f"{argname} {value!r} matches no file.")
        files[argname] = matched
    input_shape = _check_shape(input_shape)
    train = tf.data.TFRecordDataset(files["train_files"])
    test = tf.data.TFRecordDataset(files["test_files"])
    source = f"tfrecord:{os.path.dirname(files['train_files'][0]) or '.'}"
    return StreamingDataset(name, train, test, num_classes, input_shape, _record_decoder(input_shape, image_key, label_key),
                            num_train, num_test, source=source, shuffle_buffer=shuffle_buffer)


def _example(image: np.ndarray, label) -> bytes:
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _split_batches(dataset: Dataset, split: str):
    if split == "test":
        yield from dataset.test_batches(1024)
    elif dataset.streams:
        yield from dataset._decoded(dataset._raw["train"]).batch(1024).as_numpy_iterator()  # noqa: SLF001
    else:
        for start in range(0, dataset.num_train, 1024):
            yield dataset.x_train[start:start + 1024], dataset.y_train[start:start + 1024]


def save_tfrecord(dataset: Dataset, folder: str | os.PathLike, shards: int = 1) -> dict:
    """Writes ``dataset`` as TFRecord shards plus a ``dataset.json`` that :func:`load_tfrecord` reads.

    Images are stored as raw uint8 bytes (``round(255 * x)``: exact for 8-bit sources such as
    MNIST), labels as int64, in the dataset's order (shard 0 holds the first records). Each shard is written to a temporary name and renamed, so a reader
    never sees half a file. Reads ``dataset`` in batches (a streaming one too).

    Args:
        dataset: an in-memory or streaming :class:`Dataset`.
        folder: created if needed; holds ``train-00000-of-0000N.tfrecord``, ``test-...`` and ``dataset.json``.
        shards: files per split (several let tf.data read in parallel).

    Returns:
        ``{"train": [paths], "test": [paths], "meta": path}``.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a kcompress.data.Dataset, got {type(dataset).__name__}.")
    if not isinstance(folder, (str, os.PathLike)) or not os.fspath(folder):
        raise TypeError(f"folder must be a folder path, got {folder!r}.")
    check_int("shards", shards, minimum=1)
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    out = {}
    counts = {}
    for split in ("train", "test"):
        paths = [os.path.join(folder, f"{split}-{i:05d}-of-{shards:05d}.tfrecord") for i in range(shards)]
        total = dataset.num_train if split == "train" else dataset.num_test
        writers = [tf.io.TFRecordWriter(p + ".tmp") for p in paths]
        n = 0
        try:
            for x, y in _split_batches(dataset, split):
                pixels = np.clip(np.round(np.asarray(x) * 255.0), 0, 255).astype(np.uint8)
                for image, label in zip(pixels, y, strict=True):
                    # Contiguous shards: read in file order, the records keep the dataset's order.
                    writers[min(shards - 1, n * shards // max(total, 1))].write(_example(image, label))
                    n += 1
        finally:
            for w in writers:
                w.close()
        for p in paths:
            os.replace(p + ".tmp", p)
        out[split], counts[split] = paths, n
    meta = {"name": dataset.name, "num_classes": dataset.num_classes, "input_shape": list(dataset.input_shape),
            "num_train": counts["train"], "num_test": counts["test"], "shards": shards}
    meta_path = os.path.join(folder, _META)
    write_atomic(meta_path, json.dumps(meta, indent=1))
    out["meta"] = meta_path
    logging.info("Wrote %s as TFRecord to %s: %d train, %d test in %d shard(s) each", dataset.name, folder,
                 counts["train"], counts["test"], shards)
    return out


def load_tfrecord(folder: str | os.PathLike, shuffle_buffer: int = 10_000) -> StreamingDataset:
    """The :class:`StreamingDataset` of a folder written by :func:`save_tfrecord`.

    Raises:
        ValueError: no ``dataset.json`` in ``folder``, or it names shards that are missing.
    """
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a folder path, got {type(folder).__name__}.")
    folder = os.fspath(folder)
    meta_path = os.path.join(folder, _META)
    if not os.path.isfile(meta_path):
        raise ValueError(f"folder {folder!r} has no {_META}; write it with kcompress.data.save_tfrecord(dataset, folder), "
                         "or read foreign TFRecords with kcompress.data.from_tfrecord(...).")
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    shards = int(meta["shards"])
    files = {s: [os.path.join(folder, f"{s}-{i:05d}-of-{shards:05d}.tfrecord") for i in range(shards)]
             for s in ("train", "test")}
    missing = [p for ps in files.values() for p in ps if not os.path.isfile(p)]
    if missing:
        raise ValueError(f"{meta_path} names shards that are missing: {missing}.")
    return from_tfrecord(files["train"], files["test"], name=meta["name"], num_classes=meta["num_classes"],
                         input_shape=tuple(meta["input_shape"]), num_train=meta["num_train"],
                         num_test=meta["num_test"], shuffle_buffer=shuffle_buffer)


def from_tfds(name: str, data_dir: str | None = None, shuffle_buffer: int = 10_000,
              download: bool = True) -> StreamingDataset:
    """A :class:`StreamingDataset` over a tensorflow-datasets image-classification dataset.

    Unlike ``kcompress.data.load`` (which reads whole splits into arrays) the splits
    stream from tfds' files. Split sizes, classes and the image shape come from the
    builder's info.

    Args:
        name: a tfds name with ``image`` and ``label`` features, e.g. ``"mnist"``, ``"imagenet2012"``.
        data_dir: tfds data folder (None: tfds' default).
        shuffle_buffer: training shuffle buffer (elements).
        download: let tfds download and prepare the data when it is missing.
    """
    import tensorflow_datasets as tfds

    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a tensorflow-datasets name, got {name!r}.")
    builder = tfds.builder(name, data_dir=data_dir)
    if download:
        builder.download_and_prepare()
    info = builder.info
    features = info.features
    if "image" not in features or "label" not in features:
        raise ValueError(f"tfds dataset {name!r} has features {sorted(features)}; kcompress needs 'image' and 'label'.")
    shape = tuple(features["image"].shape)
    if not all(shape):
        raise ValueError(f"tfds dataset {name!r} has images of varying shape {shape}; resize them into a "
                         "tf.data pipeline and use kcompress.data.from_tf_data.")
    known = {key: info.splits[key].num_examples for key in info.splits.keys()}  # noqa: SIM118 - a SplitDict
    test_split = "test" if "test" in known or not known else "validation"
    train, test = (builder.as_dataset(split=s, as_supervised=True, shuffle_files=False) for s in ("train", test_split))
    return StreamingDataset(name, train, test, features["label"].num_classes, shape, None, known.get("train"),
                            known.get(test_split), source=f"tfds:{name}", shuffle_buffer=shuffle_buffer)
