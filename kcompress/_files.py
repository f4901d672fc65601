"""Files written whole or not at all: the one place kcompress replaces a file atomically."""

from __future__ import annotations

import os
import tempfile

__all__ = ["save_model_atomic", "write_atomic"]


def write_atomic(path: str | os.PathLike, data: bytes | str) -> str:
    """Writes ``data`` so that ``path`` holds either the old or the whole new content."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike), got {type(path).__name__}.")
    path = os.fspath(path)
    if not path:
        raise ValueError("path must be a non-empty file path.")
    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        raise ValueError(f"path {path!r} is a folder; pass a file path inside it, e.g. "
                         f"{os.path.join(path, 'model.tflite')!r}.")
    if not isinstance(data, (bytes, bytearray, memoryview, str)):
        raise TypeError(f"data must be bytes or str, got {type(data).__name__}.")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create the folder {folder!r} for path {path!r} ({type(err).__name__}: "
                         f"{err.strerror or err}); pass a path in a folder you can write.") from err
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_model_atomic(model, path: str | os.PathLike) -> str:
    """``model.save(path)`` through a temporary sibling, so ``path`` holds the old model or the whole new one.

    The temporary file keeps the extension (``.keras``, ``.h5``), which picks Keras' format.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp" + os.path.splitext(path)[1]
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
