"""One layer from Keras 3 to tf_keras (Keras 2) and back: config translation and weight copy.

Both libraries name their built-in layers alike and mostly agree on the config
keys, so a layer is rebuilt with ``from_config`` of the class of the same name in
the other library. What differs is translated here, and only that:

- dtype policies: Keras 3 serializes a ``DTypePolicy`` dict, tf_keras a name;
  both accept the name (``"float32"``, ``"mixed_float16"``).
- initializers, regularizers and constraints: rebuilt as objects of the target
  library from their class name and config (Keras 3 initializers carry
  ``input_axes`` / ``output_axes``, which tf_keras lacks).
- keys one library has and the other lacks (``quantization_config`` and LoRA in
  Keras 3 ``Dense``, ``rms_scaling`` in ``LayerNormalization``, ``groups`` in
  tf_keras ``Conv2DTranspose``, ...): dropped when they hold the value that means
  "feature off"; any other value is an error, never silently lost.
- renamed keys (``LeakyReLU``'s ``negative_slope`` is ``alpha`` in tf_keras).
- ``BatchNormalization.axis``: tf_keras stores a list (``[3]``), Keras 3 takes one int.
- activations: only those whose two implementations give the same numbers.
"""

from __future__ import annotations

import inspect

import numpy as np

from kcompress._keras import keras as tf_keras

#: Layer classes converted in both directions (class names shared by both libraries).
SUPPORTED_LAYERS = (
    "InputLayer",
    "Conv1D", "Conv2D", "Conv1DTranspose", "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D",
    "Dense",
    "BatchNormalization", "LayerNormalization",
    "Activation", "ReLU", "LeakyReLU", "Softmax",
    "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "Flatten", "Reshape", "Permute", "Dropout",
    "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D", "UpSampling1D", "UpSampling2D",
    "Rescaling",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
)

#: Activation names both libraries compute identically (checked by tests/keras3/test_layers.py).
#: Not ``hard_sigmoid``: Keras 3's is relu6(x + 3) / 6, tf_keras's is clip(0.2 x + 0.5).
SUPPORTED_ACTIVATIONS = (
    "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "swish", "mish",
    "sigmoid", "tanh", "softmax", "log_softmax", "softplus", "softsign", "exponential",
)

# Keys one library has and the other lacks, with the value that leaves the feature off.
_NEUTRAL = {
    "quantization_config": None, "lora_rank": None, "lora_alpha": None,  # Keras 3 Dense / Conv / Embedding
    "rms_scaling": False,  # Keras 3 LayerNormalization
    "synchronized": False, "renorm": False, "renorm_clipping": None, "renorm_momentum": 0.99,  # BN
    "fused": None, "virtual_batch_size": None, "adjustment": None,  # tf_keras BatchNormalization
    "groups": 1,  # tf_keras Conv*Transpose
    "input_axes": None, "output_axes": None,  # Keras 3 variance-scaling initializers
    "data_format": "channels_last",  # Keras 3 ZeroPadding1D / Cropping1D / UpSampling1D
}

# Keys tf_keras keeps in a layer's config but never uses (SeparableConv2D inherits Conv's kernel_*).
_UNUSED = {"SeparableConv2D": {"kernel_initializer", "kernel_regularizer", "kernel_constraint"}}

# Keras 3 name -> tf_keras name, per layer class.
_RENAMED = {"LeakyReLU": {"negative_slope": "alpha"}}

# Which module of the target library rebuilds a serialized object, by config-key suffix.
_OBJECT_KINDS = ("initializer", "regularizer", "constraint")


class Library:
    """One side of a conversion: the Keras module and how to name it in messages."""

    def __init__(self, module, name: str, is_keras3: bool):
        self.module, self.name, self.is_keras3 = module, name, is_keras3

    def layer_class(self, class_name: str):
        return getattr(self.module.layers, class_name)

    def accepted_keys(self, cls) -> set[str]:
        keys = set()
        # Subclasses pass **kwargs up (GlobalAveragePooling1D -> GlobalPooling1D(keepdims)), so
        # every __init__ on the way to Layer counts.
        for klass in cls.__mro__:
            if "__init__" in vars(klass):
                keys |= {p for p in inspect.signature(klass.__init__).parameters if p not in ("self", "kwargs")}
            if klass is self.module.layers.Layer:
                break
        return keys | {"name", "trainable", "dtype", "activity_regularizer"}


def tf_keras_library() -> Library:
    return Library(tf_keras, "tf_keras", is_keras3=False)


def _describe(layer) -> str:
    return f"layer {layer.name!r} ({type(layer).__module__}.{type(layer).__name__})"


def unsupported_layer_error(layer, source: Library, reason: str | None = None) -> ValueError:
    """The error for a layer that cannot convert: its class (with the supported list) or ``reason``."""
    if reason is not None:
        return ValueError(f"Cannot convert {_describe(layer)} from {source.name}: {reason}.")
    return ValueError(
        f"Cannot convert {_describe(layer)} from {source.name}: {type(layer).__name__} is not a layer "
        f"kcompress converts. Supported layers: {', '.join(SUPPORTED_LAYERS)} (plus Sequential / Functional "
        "sub-models). Replace the layer with supported ones, or build the model with "
        "`import tf_keras as keras` to use it with kcompress directly."
    )


def check_supported(layer, source: Library) -> None:
    """Raises ValueError unless ``layer`` is a built-in layer of ``source`` that has a counterpart."""
    name = type(layer).__name__
    builtin = getattr(source.module.layers, name, None)
    if name not in SUPPORTED_LAYERS or type(layer) is not builtin:
        raise unsupported_layer_error(layer, source)
    mode = getattr(getattr(layer, "dtype_policy", None), "quantization_mode", None)
    if source.is_keras3 and (mode or getattr(layer, "quantization_config", None) is not None):
        raise unsupported_layer_error(
            layer, source, f"it is quantized by Keras 3 (mode {mode!r}); convert the float model and let "
            "kcompress quantize it (kcompress.quantization.quantize_aware, or kcompress.export.to_tflite(mode='int8'))")


def _policy_name(value, layer, source: Library) -> str | None:
    if value is None or isinstance(value, str):
        name = value
    elif isinstance(value, dict):
        name = (value.get("config") or {}).get("name")
    else:
        name = getattr(value, "name", None)
    if name is not None and not (name.startswith("float") or name.startswith("mixed_") or name == "bfloat16"):
        raise unsupported_layer_error(
            layer, source, f"its dtype policy {name!r} is not a float policy (a Keras 3 quantized layer); "
            "convert the float model and let kcompress quantize it")
    return name


def _activation(value, layer, source: Library) -> str:
    if isinstance(value, str) and value in SUPPORTED_ACTIVATIONS:
        return value
    shown = value if isinstance(value, str) else getattr(value, "__name__", value)
    raise unsupported_layer_error(
        layer, source, f"its activation {shown!r} has no identical counterpart; supported activations: "
        f"{', '.join(SUPPORTED_ACTIVATIONS)}")


def _rebuild_object(key: str, value, layer, source: Library, target: Library):
    """An initializer / regularizer / constraint of the target library from the source's serialization."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    if not isinstance(value, dict) or "class_name" not in value:
        raise unsupported_layer_error(layer, source, f"its {key} {value!r} is not a serialized Keras object")
    kind = next(k for k in _OBJECT_KINDS if key.endswith(k))
    module = getattr(target.module, f"{kind}s")
    class_name = value["class_name"]
    cls = getattr(module, class_name, None)
    if value.get("registered_name") not in (None, class_name) or cls is None:
        raise unsupported_layer_error(
            layer, source, f"its {key} is the custom {class_name!r}, which {target.name} does not have")
    config = dict(value.get("config") or {})
    accepted = {p for p in inspect.signature(cls.__init__).parameters if p != "self"}
    for k in list(config):
        if k not in accepted and "kwargs" not in accepted:
            if config[k] is not None and _NEUTRAL.get(k, object()) != config[k]:
                raise unsupported_layer_error(
                    layer, source, f"its {key} sets {k}={config[k]!r}, which {target.name}'s {class_name} lacks")
            del config[k]
    return cls.from_config(config)


def translate_config(layer, source: Library, target: Library) -> dict:
    """The config of ``layer`` (a ``source`` layer) for the ``target`` class of the same name."""
    class_name = type(layer).__name__
    config = _plain(dict(layer.get_config()))
    renames = _RENAMED.get(class_name, {})
    if not source.is_keras3:
        renames = {v: k for k, v in renames.items()}
    accepted = target.accepted_keys(target.layer_class(class_name))
    out = {}
    for key, value in config.items():
        if key in _UNUSED.get(class_name, ()) and key not in accepted:
            continue
        key = renames.get(key, key)
        if key == "dtype":
            value = _policy_name(value, layer, source)
        elif key == "activation":
            value = _activation(value, layer, source)
        elif key.endswith(_OBJECT_KINDS):
            value = _rebuild_object(key, value, layer, source, target)
        if key not in accepted:
            if key in _NEUTRAL and _values_equal(value, _NEUTRAL[key]) or key not in _NEUTRAL and value is None:
                continue
            raise unsupported_layer_error(
                layer, source, f"it sets {key}={value!r}, which {target.name}'s {class_name} has no equivalent for")
        out[key] = value
    if class_name in _FIXUPS:
        _FIXUPS[class_name](out, layer, source, target)
    return out


def _plain(value):
    """Plain lists / dicts for the trackable wrappers tf_keras puts in configs (``ListWrapper``)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value) if type(value) in (list, tuple) else [_plain(v) for v in value]
    return value


def _batch_norm_axis(config: dict, layer, source: Library, target: Library) -> None:
    axis = config.get("axis")
    if target.is_keras3 and isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise unsupported_layer_error(layer, source, f"it normalizes over axes {list(axis)}; Keras 3 takes one axis")
        config["axis"] = int(axis[0])


_FIXUPS = {"BatchNormalization": _batch_norm_axis}


def _values_equal(a, b) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def convert_layer(layer, source: Library, target: Library):
    """A new, unbuilt ``target`` layer equivalent to ``layer`` (weights are copied once it is built)."""
    check_supported(layer, source)
    config = translate_config(layer, source, target)
    try:
        return target.layer_class(type(layer).__name__).from_config(config)
    except (TypeError, ValueError) as err:  # a value the target's layer refuses (e.g. a negative ReLU threshold)
        raise unsupported_layer_error(layer, source, f"{target.name} refuses its config: {err}") from err


def copy_weights(src, dst, source: Library) -> None:
    """Copies the weights of built ``src`` into built ``dst``, checking that they line up."""
    values = src.get_weights()
    shapes = [tuple(w.shape) for w in dst.weights]
    if [tuple(np.shape(v)) for v in values] != shapes:
        raise unsupported_layer_error(
            src, source, f"its weights {[tuple(np.shape(v)) for v in values]} do not match the rebuilt layer's {shapes}")
    dst.set_weights(values)
