"""The one Keras shim: every kcompress module gets TensorFlow and Keras from here.

TFMOT works only with Keras 2, so kcompress uses ``tf_keras`` directly. Setting
``TF_USE_LEGACY_KERAS=1`` before TensorFlow loads also makes ``tf.keras`` resolve
to Keras 2 for the user; when TensorFlow was imported earlier the variable comes
too late for ``tf.keras``, but importing ``tf_keras`` by name still gives Keras 2
models, which is all kcompress builds and accepts.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["tf", "keras", "check_model", "is_keras3_model"]


def is_keras3_model(obj) -> bool:
    """True when ``obj`` is a Keras 3 (``keras`` package) model or layer."""
    module = type(obj).__module__ or ""
    if module.startswith("tf_keras"):
        return False
    for cls in type(obj).__mro__:
        mod = cls.__module__ or ""
        if mod == "keras" or mod.startswith("keras."):
            return True
    return False


def check_model(model, argname: str = "model"):
    """Checks that ``model`` is a tf_keras (Keras 2) model and returns it.

    Raises:
        TypeError: for a Keras 3 model (with how to fix it) or a non-model.
    """
    if isinstance(model, keras.Model):
        return model
    if is_keras3_model(model):
        raise TypeError(
            f"{argname} is a Keras 3 model ({type(model).__module__}.{type(model).__name__}); "
            "kcompress needs a Keras 2 (tf_keras) model because TensorFlow Model Optimization "
            "only supports Keras 2. Build it with `import tf_keras as keras` (or "
            "`kcompress.models.get(...)`), or set TF_USE_LEGACY_KERAS=1 before importing "
            "TensorFlow so that tf.keras is Keras 2."
        )
    raise TypeError(
        f"{argname} must be a tf_keras.Model, got {type(model).__module__}.{type(model).__name__}."
    )
