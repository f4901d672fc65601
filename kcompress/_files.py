"""Files written whole or not at all: the one place kcompress replaces a file atomically."""

from __future__ import annotations

import contextlib
import os
import tempfile

__all__ = ["save_model_atomic", "write_atomic"]


def _file_path(path, example: str) -> str:
    """``path`` as a str, its folder created; errors name the argument and what is allowed."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike), got {type(path).__name__}.")
    path = os.fspath(path)
    if not path:
        raise ValueError("path must be a non-empty file path.")
    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        raise ValueError(f"path {path!r} is a folder; pass a file path inside it, e.g. "
                         f"{os.path.join(path, example)!r}.")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create the folder {folder!r} for path {path!r} ({type(err).__name__}: "
                         f"{err.strerror or err}); pass a path in a folder you can write.") from err
    return path


@contextlib.contextmanager
def _replaced_by(tmp: str, path: str):
    """Moves ``tmp`` over ``path`` when the block ends well; removes it when the block fails."""
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_atomic(path: str | os.PathLike, data: bytes | str) -> str:
    """Writes ``data`` so that ``path`` holds either the old or the whole new content."""
    path = _file_path(path, "model.tflite")
    if not isinstance(data, (bytes, bytearray, memoryview, str)):
        raise TypeError(f"data must be bytes or str, got {type(data).__name__}.")
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-",
                               suffix=os.path.basename(path))
    with _replaced_by(tmp, path), os.fdopen(fd, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    return path


def save_model_atomic(model, path: str | os.PathLike) -> str:
    """``model.save(path)`` through a temporary sibling, so ``path`` holds the old model or the whole new one.

    The temporary file keeps the extension (``.keras``, ``.h5``), which picks Keras' format.
    """
    path = _file_path(path, "model.keras")
    with _replaced_by(path + ".tmp" + os.path.splitext(path)[1], path) as tmp:
        model.save(tmp)
    return path
