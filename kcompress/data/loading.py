"""``load(name)``: offline ``.npz`` archives first, then tensorflow-datasets."""

from __future__ import annotations

import os
import zipfile

import numpy as np
from absl import logging

from kcompress.data.dataset import Dataset

# name -> (tfds name, num_classes, image shape)
DATASETS: dict[str, tuple[str, int, tuple[int, int, int]]] = {
    "mnist": ("mnist", 10, (28, 28, 1)),
    "fashion_mnist": ("fashion_mnist", 10, (28, 28, 1)),
    "cifar10": ("cifar10", 10, (32, 32, 3)),
    "cifar100": ("cifar100", 100, (32, 32, 3)),
    "svhn_cropped": ("svhn_cropped", 10, (32, 32, 3)),
}

ENV_VAR = "KCOMPRESS_DATA_DIR"
_KEYS = ("x_train", "y_train", "x_test", "y_test")


class DataNotFoundError(FileNotFoundError):
    """No source could provide the dataset; the message lists what was tried."""


def load(name: str, data_dir: str | os.PathLike | None = None, use_tfds: bool = True) -> Dataset:
    """Loads an image-classification dataset as float32 NHWC images in [0, 1].

    Looks for ``<name>.npz`` (Keras layout: ``x_train``, ``y_train``, ``x_test``,
    ``y_test``) in ``data_dir``, then in ``$KCOMPRESS_DATA_DIR``, then asks
    tensorflow-datasets (which downloads when online).

    Args:
        name: one of ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``,
            ``svhn_cropped``.
        data_dir: optional folder holding ``<name>.npz``.
        use_tfds: whether to fall back to tensorflow-datasets.

    Returns:
        A :class:`Dataset`.

    Raises:
        ValueError: unknown ``name``, or an archive that is corrupt or mis-shaped.
        DataNotFoundError: no source had the data; the message says what was
            tried and how to fix it.

    Example:
        >>> ds = load("mnist", data_dir="../shared/data")
        >>> ds.x_train.shape, ds.num_classes
        ((60000, 28, 28, 1), 10)
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"name must be one of {sorted(DATASETS)}, got {name!r}.")
    tfds_name, num_classes, shape = DATASETS[name]
    tried = []
    dirs = []
    if data_dir is not None:
        if not os.path.isdir(data_dir):
            raise DataNotFoundError(f"data_dir {str(data_dir)!r} is not a folder.")
        dirs.append(("data_dir", os.fspath(data_dir)))
    if os.environ.get(ENV_VAR):
        dirs.append((f"${ENV_VAR}", os.environ[ENV_VAR]))
    for label, folder in dirs:
        path = os.path.join(folder, f"{name}.npz")
        if os.path.isfile(path):
            arrays = _read_npz(path)
            return _make(name, arrays, num_classes, shape, source=path)
        tried.append(f"{label}: {path} (no such file)")
    if not dirs:
        tried.append(f"data_dir and ${ENV_VAR}: neither was set")
    if use_tfds:
        try:
            arrays = _read_tfds(tfds_name)
        except Exception as err:  # noqa: BLE001 - tfds raises many kinds when offline
            tried.append(f"tensorflow-datasets {tfds_name!r}: {type(err).__name__}: {str(err)[:300]}")
        else:
            return _make(name, arrays, num_classes, shape, source=f"tfds:{tfds_name}")
    else:
        tried.append("tensorflow-datasets: disabled (use_tfds=False)")
    raise DataNotFoundError(
        f"Could not load dataset {name!r}. Tried:\n  - "
        + "\n  - ".join(tried)
        + f"\nFix: put {name}.npz (keys {', '.join(_KEYS)}, as written by np.savez) in a folder and "
        f"pass data_dir=... or set {ENV_VAR}; or go online so tensorflow-datasets can download it."
    )


def _read_npz(path: str) -> dict[str, np.ndarray]:
    # np.load reads a file that is not a zip archive as a pickle and would advise allow_pickle=True.
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a readable .npz archive (not a zip file: a text, pickle or truncated file?); "
            "re-create it with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)."
        )
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in _KEYS if k not in f.files]
            if missing:
                raise ValueError(
                    f"{path} lacks the keys {missing}; a dataset archive needs {list(_KEYS)} "
                    f"(found {sorted(f.files)})."
                )
            return {k: f[k] for k in _KEYS}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        if isinstance(err, ValueError) and "lacks the keys" in str(err):
            raise
        raise ValueError(f"{path} is not a readable .npz archive ({type(err).__name__}: {err}); re-create it with np.savez.") from err


def _read_tfds(tfds_name: str) -> dict[str, np.ndarray]:
    import tensorflow_datasets as tfds

    logging.info("Loading %s through tensorflow-datasets", tfds_name)
    (x_train, y_train), (x_test, y_test) = tfds.as_numpy(
        tfds.load(tfds_name, split=["train", "test"], batch_size=-1, as_supervised=True)
    )
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _images(x: np.ndarray, key: str, shape: tuple[int, int, int], source: str) -> np.ndarray:
    if x.ndim == 3 and shape[2] == 1:
        x = x[..., None]
    if x.ndim != 4 or tuple(x.shape[1:]) != shape:
        raise ValueError(f"{source}: {key} has shape {x.shape}; expected (n, {', '.join(map(str, shape))}).")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{source}: {key} has dtype {x.dtype}; expected uint8 (0..255) or float in [0, 1].")
    x = x.astype(np.float32)
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise ValueError(f"{source}: float {key} must lie in [0, 1], found [{x.min()}, {x.max()}].")
    return x


def _labels(y: np.ndarray, key: str, n: int, num_classes: int, source: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{source}: {key} has shape {y.shape}; expected ({n},) to match the images.")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{source}: {key} has dtype {y.dtype}; expected integer class ids.")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{source}: {key} holds labels in [{y.min()}, {y.max()}]; expected [0, {num_classes - 1}].")
    return y.astype(np.int64)


def _make(name, arrays, num_classes, shape, source) -> Dataset:
    x_train = _images(arrays["x_train"], "x_train", shape, source)
    x_test = _images(arrays["x_test"], "x_test", shape, source)
    y_train = _labels(arrays["y_train"], "y_train", len(x_train), num_classes, source)
    y_test = _labels(arrays["y_test"], "y_test", len(x_test), num_classes, source)
    logging.info("Loaded %s from %s: %d train, %d test", name, source, len(x_train), len(x_test))
    return Dataset(name, x_train, y_train, x_test, y_test, num_classes, source)
