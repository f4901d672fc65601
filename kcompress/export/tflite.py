"""Keras -> TFLite flatbuffers in every post-training mode, and atomic saving."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable

import numpy as np
from absl import logging

from kcompress._files import write_atomic
from kcompress._keras import check_model, keras, tf
from kcompress.export.flatbuffer import check_flatbuffer
from kcompress.validation import check_bool, check_int

MODES = ("float32", "dynamic", "int8", "float16", "int16x8")
_IO_TYPES = {
    "float32": ("float32",),
    "dynamic": ("float32",),
    "float16": ("float32",),
    "int8": ("int8", "uint8", "float32"),
    "int16x8": ("float32", "int16"),
}
_TF_TYPES = {"float32": tf.float32, "int8": tf.int8, "uint8": tf.uint8, "int16": tf.int16}


def _is_qat(model) -> bool:
    return any(type(layer).__name__.startswith("Quantize") for layer in model.submodules if isinstance(layer, keras.layers.Layer))


def _has_pruning_wrappers(model) -> bool:
    return any(type(layer).__name__ == "PruneLowMagnitude" for layer in model.submodules if isinstance(layer, keras.layers.Layer))


def representative_dataset(data, input_shape: tuple[int, ...], limit: int | None = None,
                           verbose: bool = True) -> Callable[[], Iterable[list[np.ndarray]]]:
    """Turns calibration data into the generator the TFLite converter wants.

    Args:
        data: a float array ``(n, *input_shape)``, a ``kcompress.data.Dataset``
            (200 training images are drawn), an iterable of such arrays/batches
            or of single samples, or a callable returning such an iterable.
        input_shape: the model's input shape without the batch dimension.
        limit: most samples to use.
        verbose: show a progress bar while the converter calibrates.

    Returns:
        A zero-argument callable yielding ``[sample]`` with a batch dimension of 1.

    Raises:
        ValueError/TypeError: when a sample's shape or dtype does not fit the model;
            checked before conversion starts.
    """
    from kcompress.data import Dataset

    check_int("limit", limit, minimum=1, allow_none=True)
    if isinstance(data, Dataset):
        if not data.num_train:
            raise ValueError(f"representative_data is the Dataset {data.name!r} with an empty training split; "
                             "calibration needs training images (100-500 is typical).")
        # A streaming Dataset reads only these samples.
        data = data.representative(min(200 if limit is None else limit, data.num_train))
    if callable(data) and not isinstance(data, np.ndarray):
        data = data()
    if isinstance(data, (tf.Tensor, np.ndarray)):
        chunks = [np.asarray(data)]
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        # Read only up to ``limit`` samples, so a long stream (a tf.data pipeline) is never held whole.
        chunks, taken = [], 0
        for item in data:
            if isinstance(item, (tuple, list)) and len(item) in (1, 2) and not np.isscalar(item[0]):
                item = item[0]  # (x,) or (x, y) batches
            chunk = np.asarray(item)
            chunks.append(chunk)
            taken += 1 if tuple(chunk.shape) == tuple(int(d) for d in input_shape) else (len(chunk) if chunk.ndim else 1)
            if limit is not None and taken >= limit:
                break
    else:
        raise TypeError(
            f"representative_data must be an array, a kcompress Dataset, an iterable of arrays or a "
            f"callable returning one; got {type(data).__name__}."
        )
    samples = []
    shape = tuple(int(d) for d in input_shape)
    for i, chunk in enumerate(chunks):
        if not (np.issubdtype(chunk.dtype, np.floating)):
            raise TypeError(
                f"representative_data item {i} has dtype {chunk.dtype}; calibration needs float images "
                f"scaled as at training (e.g. float32 in [0, 1])."
            )
        if tuple(chunk.shape) == shape:
            chunk = chunk[None]
        if chunk.ndim != len(shape) + 1 or tuple(chunk.shape[1:]) != shape:
            raise ValueError(
                f"representative_data item {i} has shape {tuple(chunk.shape)}; the model expects "
                f"(batch, {', '.join(map(str, shape))}) or one sample of {shape}."
            )
        if len(chunk):
            samples.extend(np.split(chunk.astype(np.float32), len(chunk)))
    if limit is not None:
        check_int("limit", limit, minimum=1)
        samples = samples[:limit]
    if not samples:
        raise ValueError("representative_data is empty; pass at least one sample (100-500 is typical).")

    def generator():
        bar = keras.utils.Progbar(len(samples), unit_name="sample") if verbose else None
        for i, sample in enumerate(samples):
            yield [sample]
            if bar is not None and (i + 1) % max(1, len(samples) // 20) == 0 or (bar is not None and i + 1 == len(samples)):
                bar.update(i + 1)

    generator.num_samples = len(samples)
    generator.samples = samples
    return generator


def input_signature(model) -> tf.TensorSpec:
    """The batch-1 ``TensorSpec`` of ``model``'s single input: Functional, Sequential or subclassed.

    A subclassed model has no ``inputs``; its input is known once it has been called (or fit).

    Raises:
        ValueError: more than one input, a model never built or called, or an input with an
            unknown non-batch dimension (a flatbuffer needs a fixed shape).
    """
    if getattr(model, "inputs", None):
        if len(model.inputs) != 1:
            raise ValueError(f"model must have exactly one input, got {len(model.inputs)}.")
        shape, dtype = model.inputs[0].shape[1:], model.inputs[0].dtype
    else:
        saved = model.save_spec(dynamic_batch=True) if hasattr(model, "save_spec") else None
        args = tf.nest.flatten(saved[0]) if saved else []
        if not args:
            raise ValueError(
                f"model {model.name!r} ({type(model).__name__}) has never been called, so its input shape is "
                "unknown; call it once on a batch (model(x[:1])) or fit it before exporting or evaluating it."
            )
        if len(args) != 1 or tf.nest.flatten(saved[1]):
            raise ValueError(f"model must take exactly one input tensor, got {len(args) + len(tf.nest.flatten(saved[1]))}.")
        shape, dtype = args[0].shape[1:], args[0].dtype
    if any(d is None for d in shape):
        raise ValueError(
            f"model's input shape (None, {', '.join(map(str, shape))}) has unknown dimensions; a flatbuffer "
            "needs a fixed shape: build the model with keras.Input(shape=(height, width, channels))."
        )
    return tf.TensorSpec((1, *(int(d) for d in shape)), dtype, name="input")


# A first-BatchNorm input whose spread differs from the moving statistics by more than this factor
# means calibration data on another scale than the training data.
_SPREAD_FACTOR = 8.0


def check_calibration_range(model, samples) -> str | None:
    """Warns when calibration samples are not on the scale the model was trained on.

    Full-integer calibration fixes every activation range from these samples; data on another
    scale (pixels 0-255 for a model trained on [0, 1]) gives an int8 model near chance accuracy
    without an error. Two checks, the first that applies decides: a model whose first normalization
    layer is a BatchNormalization compares the spread of that layer's input on the samples with
    the moving variance it learned in training; otherwise integer-valued samples above 1 (raw
    pixels) are flagged unless the model starts with a Rescaling / Normalization layer.

    Args:
        model: the tf_keras model being converted.
        samples: a list of float arrays of shape ``(1, *input_shape)``.

    Returns:
        The warning message, or None when the data looks right.
    """
    x = np.concatenate(samples[:64]).astype(np.float32)
    first = next((layer for layer in _graph_layers(model) if not isinstance(layer, keras.layers.InputLayer)), None)
    if isinstance(first, (keras.layers.Rescaling, keras.layers.Normalization)):
        return None
    lo, hi = float(x.min()), float(x.max())
    message = None
    ratio = _bn_spread_ratio(model, x)
    if ratio is not None:
        if ratio > _SPREAD_FACTOR or ratio < 1 / _SPREAD_FACTOR:
            message = (
                f"representative_data (values in [{lo:g}, {hi:g}]) reaches the model's first BatchNormalization "
                f"with {ratio:.3g}x the spread the model saw in training (its moving variance): the calibration "
                "data is on another scale than the training data, and int8 ranges calibrated on it will be "
                "wrong. Scale it as at training (kcompress datasets: float32 in [0, 1], e.g. "
                "dataset.representative(200))."
            )
    elif hi > 1.0 and np.array_equal(x, np.round(x)):
        message = (
            f"representative_data holds integer values in [{lo:g}, {hi:g}], which look like raw pixels; "
            "kcompress datasets and the models trained on them use float images in [0, 1], and int8 ranges "
            "calibrated on 0-255 give a model near chance accuracy. Divide by 255 (or use "
            "dataset.representative(200)); ignore this if the model was trained on 0-255 inputs."
        )
    if message:
        warnings.warn(message, stacklevel=3)
        logging.warning("%s", message)
    return message


def _graph_layers(model):
    if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)):
        return []
    out = []
    for layer in model.layers:
        inner = layer
        while hasattr(inner, "layer") and isinstance(inner.layer, keras.layers.Layer):
            inner = inner.layer
        if isinstance(inner, keras.Model) and getattr(inner, "_is_graph_network", False):
            out.extend(_graph_layers(inner))
        else:
            out.append(inner)
    return out


def _bn_spread_ratio(model, x) -> float | None:
    """Median over channels of (std of the first BatchNorm's input on ``x``) / sqrt(moving variance)."""
    if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)) or _is_qat(model):
        return None
    bn = next((layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)), None)
    if bn is None or not getattr(bn, "_inbound_nodes", None):
        return None
    try:
        features = keras.Model(model.inputs, bn.input)(x, training=False).numpy()
    except (ValueError, TypeError, AttributeError):
        return None
    axes = tuple(range(features.ndim - 1))
    spread = features.std(axis=axes)
    learned = np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    alive = spread > 0
    if not alive.any():
        return None
    return float(np.median(spread[alive] / learned[alive]))


def _variable_holder(model) -> tf.Module:
    """A ``tf.Module`` that tracks ``model``'s variables, the converter's trackable object.

    The converter writes its trackable object and the function's signature to a temporary
    SavedModel and converts that. Given the Keras model itself, tf_keras also serializes every
    layer (it traces each layer's call for the Keras metadata), which the converter never reads:
    70-80% of a conversion's time. Holding just the variables the function captures gives the same
    signature, and measured byte-identical flatbuffers (every mode, plain, pruned, QAT, low-rank and
    channel-cut models) in a quarter of the time.
    """
    holder = tf.Module()
    holder.model_variables = list(model.variables)
    return holder


def to_tflite(
    model,
    mode: str = "float32",
    representative_data=None,
    sparse: bool = False,
    io_type: str | None = None,
    verbose: bool = True,
    per_channel: bool = True,
    slim: bool = False,
) -> bytes:
    """Converts a Keras model into a TFLite flatbuffer with batch size 1.

    Args:
        model: a tf_keras model (plain, stripped-pruned or quantization-aware), or a Keras 3 model (converted).
        mode: ``float32`` (no quantization), ``dynamic`` (int8 weights, float
            activations), ``int8`` (full integer; needs ``representative_data``
            unless the model is quantization-aware), ``float16`` (float16 weights),
            ``int16x8`` (int16 activations, int8 weights; needs ``representative_data``).
        representative_data: calibration samples for ``int8`` / ``int16x8``; see
            :func:`representative_dataset` for the accepted forms.
        sparse: store weight tensors that are mostly zeros in the sparse encoding.
        io_type: dtype of the model's input and output: for ``int8``: ``int8``
            (default), ``uint8`` or ``float32``; for ``int16x8``: ``float32``
            (default) or ``int16``; other modes: ``float32``.
        verbose: show calibration progress.
        per_channel: quantize conv / depthwise kernels with one scale per output channel
            (the default); ``False`` uses one scale per tensor, which saves 12 bytes per
            channel (a float scale and an int64 zero point) and may cost accuracy. It
            applies to post-training ``int8`` / ``dynamic`` / ``int16x8``; a
            quantization-aware model keeps the scheme it was trained with.
        slim: drop names and metadata from the flatbuffer (:func:`kcompress.export.slim`);
            the outputs are identical.

    Returns:
        The flatbuffer bytes.

    Raises:
        TypeError: ``model`` is not a tf_keras or Keras 3 model.
        ValueError: unknown ``mode`` or ``io_type``, missing or ill-shaped
            ``representative_data``, or a model still wrapped for pruning.

    Example:
        >>> flat = to_tflite(model, mode="int8", representative_data=ds.representative(200))
    """
    model = check_model(model)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}.")
    io_type = io_type or _IO_TYPES[mode][0]
    if io_type not in _IO_TYPES[mode]:
        raise ValueError(f"io_type for mode={mode!r} must be one of {list(_IO_TYPES[mode])}, got {io_type!r}.")
    for argname, value in (("sparse", sparse), ("per_channel", per_channel), ("slim", slim)):
        check_bool(argname, value)
    if _has_pruning_wrappers(model):
        raise ValueError(
            "model still holds pruning wrappers; call kcompress.pruning.strip(model) before export "
            "so the flatbuffer holds plain layers with the zeros in place."
        )
    spec = input_signature(model)
    qat = _is_qat(model)
    input_shape = tuple(int(d) for d in spec.shape[1:])
    needs_data = mode == "int16x8" or (mode == "int8" and not qat)
    if needs_data and representative_data is None:
        raise ValueError(
            f"mode={mode!r} needs representative_data to calibrate activation ranges, e.g. "
            f"representative_data=dataset.representative(200)."
        )
    rep = (representative_dataset(representative_data, input_shape, verbose=verbose)
           if representative_data is not None and mode in ("int8", "int16x8") else None)
    if rep is not None:
        check_calibration_range(model, rep.samples)

    fn = tf.function(lambda x: model(x, training=False))
    concrete = fn.get_concrete_function(spec)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], _variable_holder(model))
    optimizations = []
    if mode != "float32" or qat:
        optimizations.append(tf.lite.Optimize.DEFAULT)
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        if not qat:
            # A QAT graph carries its ranges in FakeQuant ops; pinning TFLITE_BUILTINS_INT8 here
            # would make the converter ask for a representative dataset before it sees them.
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = _TF_TYPES[io_type]
        converter.inference_output_type = _TF_TYPES[io_type]
    elif mode == "int16x8":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
        converter.inference_input_type = _TF_TYPES[io_type]
        converter.inference_output_type = _TF_TYPES[io_type]
    if rep is not None:
        converter.representative_dataset = rep
    if not per_channel:
        # The converter's only switch for per-tensor weight scales (no public option exists).
        converter._experimental_disable_per_channel = True
    logging.info("Converting %s to TFLite (mode=%s, sparse=%s, io_type=%s, per_channel=%s, slim=%s)",
                 model.name, mode, sparse, io_type, per_channel, slim)
    flat = bytes(converter.convert())
    if slim:
        from kcompress.export.slim import slim as _slim

        flat = _slim(flat)
    return flat


def save(flatbuffer, path: str | os.PathLike) -> str:
    """Writes a flatbuffer to ``path`` atomically (a temporary file, then a rename).

    Args:
        flatbuffer: bytes of a ``.tflite`` model.
        path: destination file; its folder is created when missing.

    Returns:
        The path written.
    """
    data = check_flatbuffer(flatbuffer)
    return write_atomic(path, data)
