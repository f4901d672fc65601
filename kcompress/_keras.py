"""The one Keras shim: every kcompress module gets TensorFlow and Keras from here.

TFMOT works only with Keras 2, so kcompress uses ``tf_keras`` directly. Setting
``TF_USE_LEGACY_KERAS=1`` before TensorFlow loads also makes ``tf.keras`` resolve
to Keras 2 for the user; when TensorFlow was imported earlier the variable comes
too late for ``tf.keras``, but importing ``tf_keras`` by name still gives Keras 2
models, which is all kcompress builds. Keras 3 models are accepted too:
:func:`check_model` converts them with :func:`kcompress.keras3.from_keras3`.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from absl import logging  # noqa: E402

__all__ = ["tf", "keras", "all_layers", "check_model", "copy_model", "is_keras3_model", "leaf_layers"]


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


def check_model(model, argname: str = "model", in_place: str | None = None):
    """Returns ``model`` as a tf_keras (Keras 2) model, converting a Keras 3 model.

    Every kcompress entry point that takes a model calls this and uses what it
    returns, so users can pass Keras 3 Sequential / Functional models (built or
    loaded from ``.keras``) anywhere. The conversion is
    :func:`kcompress.keras3.from_keras3`: a new tf_keras model with the same layers,
    names and weights; the Keras 3 model is not changed. To go back to Keras 3
    after compressing: ``kcompress.keras3.to_keras3(kcompress.pruning.strip(m))``.

    Args:
        model: a tf_keras model, or a Keras 3 model to convert.
        argname: the argument's name, for messages.
        in_place: for a function that changes the model it is given (``"fit"``), its
            name: a Keras 3 model is then refused, since the change would land on a
            converted copy the caller never sees.

    Returns:
        ``model`` itself when it is a tf_keras model, else its tf_keras conversion.

    Raises:
        TypeError: not a Keras model, or a Keras 3 model given to an ``in_place`` function.
        ValueError: a Keras 3 model that cannot be converted (subclassed, or a layer
            with no tf_keras equivalent), with what to change.

    Example:
        >>> model = check_model(model)  # first line of an entry point
    """
    if isinstance(model, keras.Model):
        return model
    if is_keras3_model(model) and _is_keras3_model_class(model) and in_place is not None:
        raise TypeError(
            f"{argname} is a Keras 3 model ({model.name!r}), and {in_place}() changes the model it is given; "
            "on a Keras 3 model that would be a converted tf_keras copy you never see. Convert once and keep "
            f"the tf_keras model: tk = kcompress.models.compile_classifier({argname}) (a compiled tf_keras "
            f"copy) or tk = kcompress.keras3.from_keras3({argname}), then {in_place}(tk, ...); "
            "kcompress.keras3.to_keras3(tk) gives Keras 3 back."
        )
    if is_keras3_model(model) and _is_keras3_model_class(model):
        # Imported here: kcompress.keras3 imports this module, and loads Keras 3 only when needed.
        from kcompress.keras3 import from_keras3

        try:
            converted = from_keras3(model)
        except ValueError as err:
            raise ValueError(f"{argname} is a Keras 3 model that kcompress cannot convert to tf_keras: {err}") from err
        logging.info(
            "%s is a Keras 3 model (%r); converted it to tf_keras with kcompress.keras3.from_keras3. The result is "
            "a tf_keras model; kcompress.keras3.to_keras3(...) converts a plain (stripped) one back.",
            argname, model.name,
        )
        return converted
    kind = " (a Keras 3 layer, not a model)" if is_keras3_model(model) else ""
    raise TypeError(
        f"{argname} must be a tf_keras.Model, got {type(model).__module__}.{type(model).__name__}{kind}. "
        "A Keras 3 keras.Model (Sequential or Functional) is accepted too: kcompress converts it."
    )


def _is_keras3_model_class(obj) -> bool:
    """True for a Keras 3 ``keras.Model`` (not a bare layer), without importing Keras 3."""
    return any(cls.__name__ == "Model" and (cls.__module__ or "").startswith("keras.") for cls in type(obj).__mro__)


def copy_model(model):
    """An independent copy of a Sequential/Functional model, weights included (the input is untouched).

    Custom layers need their classes in scope (``keras.utils.custom_object_scope``) as for
    ``keras.models.clone_model``, which this wraps.
    """
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def all_layers(model):
    """Every layer of ``model``, depth-first: a nested model, then its own layers."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


def leaf_layers(model):
    """The layers of ``model`` that are not models themselves, nested models' layers included."""
    return (layer for layer in all_layers(model) if not isinstance(layer, keras.Model))
