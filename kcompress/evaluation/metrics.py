"""``evaluate``: one dict of honest numbers for a Keras model or a flatbuffer."""

from __future__ import annotations

import time
import warnings
import zlib

import numpy as np
from absl import logging

from kcompress._keras import check_model, keras, tf
from kcompress.data import Dataset
from kcompress.evaluation import litert as _litert
from kcompress.export.flatbuffer import describe
from kcompress.export.tflite import to_tflite

KEYS = (
    "format", "accuracy", "num_samples", "params", "nonzero_params", "size_bytes", "gzip_bytes",
    "macs", "latency_ms", "throughput_sps", "runtime",
)


def gzip_size(data: bytes) -> int:
    """Bytes of ``data`` after zlib level-9 compression (what a download or OTA update costs)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes (e.g. a flatbuffer), got {type(data).__name__}.")
    return len(zlib.compress(bytes(data), 9))


def _unwrap(layer):
    while hasattr(layer, "layer") and isinstance(layer.layer, keras.layers.Layer):
        layer = layer.layer
    return layer


def _leaf_layers(model):
    for layer in model.layers:
        inner = _unwrap(layer)
        if isinstance(inner, keras.Model):
            yield from _leaf_layers(inner)
        else:
            yield layer, inner


_L = keras.layers
# Layers with weights but no multiply-accumulates worth counting (per-element scales and lookups).
_NO_MACS = (_L.BatchNormalization, _L.LayerNormalization, _L.Embedding, _L.PReLU, _L.Normalization,
            _L.GroupNormalization, _L.UnitNormalization)


def _prod(dims) -> int:
    return int(np.prod([int(d) for d in dims if d is not None], dtype=np.int64))


def _layer_macs(layer, in_shape, out_shape) -> int | None:
    """Multiply-accumulates of one call of ``layer`` (batch 1), or None for a kind not counted here.

    Channels-last, as TFLite runs them: each output element of a convolution costs kernel size x
    input channels (/ groups); a depthwise one kernel size; a transposed convolution scatters each
    input element over kernel size x filters outputs.
    """
    out_elems = _prod(out_shape[1:])
    in_ch = int(in_shape[-1])
    if isinstance(layer, (_L.SeparableConv1D, _L.SeparableConv2D)):
        k, mult = _prod(layer.kernel_size), int(layer.depth_multiplier)
        spatial = out_elems // int(layer.filters)
        return spatial * in_ch * mult * k + out_elems * in_ch * mult
    if isinstance(layer, (_L.DepthwiseConv1D, _L.DepthwiseConv2D)):
        return out_elems * _prod(layer.kernel_size)
    if isinstance(layer, (_L.Conv1DTranspose, _L.Conv2DTranspose, _L.Conv3DTranspose)):
        return _prod(in_shape[1:]) * _prod(layer.kernel_size) * int(layer.filters)
    if isinstance(layer, (_L.Conv1D, _L.Conv2D, _L.Conv3D)):
        groups = getattr(layer, "groups", 1) or 1
        return out_elems * _prod(layer.kernel_size) * in_ch // groups
    if isinstance(layer, _L.Dense):
        return out_elems * in_ch
    if isinstance(layer, _L.EinsumDense):
        # Every output element sums over the kernel indices the output does not keep.
        _, kernel_spec = layer.equation.split("->")[0].split(",")
        output_spec = layer.equation.split("->")[1]
        kernel = layer.kernel.shape
        contracted = [int(kernel[i]) for i, c in enumerate(kernel_spec) if c not in output_spec]
        return out_elems * _prod(contracted)
    return None


def _traced_shapes(model) -> tuple[list, dict]:
    """The leaf layers and ``{id(layer): (input shape, output shape)}``, from one traced call at batch 1.

    A subclassed model's layers have no ``input_shape`` / ``output_shape``; recording them while
    the model runs is the only way to see what each one receives.
    """
    from kcompress.export.tflite import input_signature

    spec = input_signature(model)
    leaves = [layer for layer in model._flatten_layers(include_self=False, recursive=True)  # noqa: SLF001
              if not list(layer._flatten_layers(include_self=False, recursive=False))]  # noqa: SLF001
    shapes: dict = {}
    patched = []
    for layer in leaves:
        def call(inputs, *args, _layer=layer, _call=layer.call, **kwargs):
            outputs = _call(inputs, *args, **kwargs)
            if hasattr(inputs, "shape") and hasattr(outputs, "shape"):
                shapes.setdefault(id(_layer), (tuple(inputs.shape), tuple(outputs.shape)))
            return outputs

        layer.call = call
        patched.append(layer)
    try:
        tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    finally:
        for layer in patched:
            del layer.call
    return leaves, shapes


def keras_macs(model) -> int:
    """Multiply-accumulates of one inference (batch 1) through every convolution and dense layer.

    Counts Conv1D / Conv2D / Conv3D (grouped too), DepthwiseConv1D / 2D, SeparableConv1D / 2D
    (depthwise + pointwise), Conv1D / 2D / 3D Transpose, Dense and EinsumDense, inside pruning and
    quantization wrappers and nested models; for a subclassed model, from one traced call. It
    agrees with ``kcompress.export.describe(flatbuffer).macs``. A layer with weights of another
    kind is named in a warning (its MACs are not counted); normalization and embedding layers
    count as none.

    Raises:
        TypeError: ``model`` is not a tf_keras model.
        ValueError: a subclassed model that was never built (call it once first).
    """
    model = check_model(model)
    if isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False):
        pairs = []
        for outer, layer in _leaf_layers(model):
            try:
                pairs.append((layer, outer.input_shape, outer.output_shape))
            except (AttributeError, RuntimeError):
                pairs.append((layer, None, None))
    else:
        leaves, shapes = _traced_shapes(model)
        pairs = [(_unwrap(layer), *shapes.get(id(layer), (None, None))) for layer in leaves]
    total, skipped = 0, []
    for layer, in_shape, out_shape in pairs:
        if isinstance(layer, (keras.layers.InputLayer, *_NO_MACS)) or not layer.weights:
            continue
        if in_shape is None or isinstance(in_shape, list) or isinstance(out_shape, list):
            skipped.append(f"{layer.name!r} ({type(layer).__name__}, shapes unknown)")
            continue
        macs = _layer_macs(layer, in_shape, out_shape)
        if macs is None:
            skipped.append(f"{layer.name!r} ({type(layer).__name__})")
        else:
            total += macs
    if skipped:
        warnings.warn(
            f"keras_macs cannot count layer(s) {', '.join(skipped)}: their multiply-accumulates are left "
            "out of the total. kcompress counts Conv1D/2D/3D, Depthwise, Separable, ConvTranspose, Dense "
            "and EinsumDense layers; kcompress.export.describe(flatbuffer).macs counts the converted graph.",
            stacklevel=2,
        )
    return int(total)


def keras_params(model) -> tuple[int, int]:
    """(parameters, nonzero parameters) over the model's weights (pruning masks excluded)."""
    model = check_model(model)
    params = nonzero = 0
    for w in model.weights:
        name = w.name
        if any(tag in name for tag in ("mask", "threshold", "pruning_step", "optimizer_step")):
            continue
        if w.dtype not in (tf.float32, tf.float16, tf.bfloat16, tf.float64):
            continue
        values = w.numpy()
        params += values.size
        nonzero += int(np.count_nonzero(values))
    return params, nonzero


def _check_dataset(dataset, max_samples):
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a kcompress.data.Dataset (from kcompress.data.load), got {type(dataset).__name__}.")
    n = len(dataset.x_test)
    if n == 0:
        raise ValueError(f"dataset {dataset.name!r} has an empty test split; evaluation needs test images.")
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int) or not 1 <= max_samples):
        raise ValueError(f"max_samples must be None or a positive int, got {max_samples!r}.")
    n = min(n, max_samples) if max_samples else n
    return dataset.x_test[:n], dataset.y_test[:n]


def _median_ms(fn, runs: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def evaluate(model_or_flatbuffer, dataset: Dataset, *, max_samples: int | None = None,
             latency_runs: int = 200, batch_size: int = 256, num_threads: int = 1,
             op_resolver: str = "auto") -> dict:
    """Measures accuracy, size, MACs and speed of a Keras model or a TFLite flatbuffer.

    A flatbuffer is run in the LiteRT interpreter over the test set (inputs
    quantized with its own scale and zero point). A Keras model is run by Keras;
    its ``size_bytes`` and ``gzip_bytes`` are those of its float32 flatbuffer,
    the file it would ship as.

    Args:
        model_or_flatbuffer: a tf_keras or Keras 3 model, or the bytes of a ``.tflite`` model.
        dataset: a :class:`kcompress.data.Dataset`; its test split is used.
        max_samples: evaluate on the first ``max_samples`` test samples only.
        latency_runs: timed single-sample inferences (after 10 warm-up runs).
        batch_size: Keras batch size for accuracy and throughput.
        num_threads: LiteRT threads for accuracy/throughput (latency is always 1 thread).
        op_resolver: LiteRT op resolver (see ``kcompress.evaluation.OP_RESOLVERS``).

    Returns:
        dict with :data:`KEYS`: ``format`` ("keras" or "tflite"), ``accuracy`` (fraction),
        ``num_samples``, ``params``, ``nonzero_params``, ``size_bytes``, ``gzip_bytes``,
        ``macs``, ``latency_ms`` (median, one sample, one thread), ``throughput_sps``
        (samples per second over the accuracy pass), ``runtime`` (``keras`` or
        ``litert:<op resolver>``; a sparse int8 graph XNNPACK rejects runs on
        ``litert:builtin_without_default_delegates``, with a warning).

    Example:
        >>> r = evaluate(to_tflite(model, "int8", representative_data=ds), ds)
        >>> r["accuracy"], r["size_bytes"], r["latency_ms"]
    """
    x, y = _check_dataset(dataset, max_samples)
    if isinstance(latency_runs, bool) or not isinstance(latency_runs, int) or latency_runs < 1:
        raise ValueError(f"latency_runs must be a positive int, got {latency_runs!r}.")
    if isinstance(model_or_flatbuffer, (bytes, bytearray, memoryview)):
        return _evaluate_flatbuffer(bytes(model_or_flatbuffer), x, y, latency_runs, num_threads, op_resolver)
    model = check_model(model_or_flatbuffer, "model_or_flatbuffer")
    return _evaluate_keras(model, x, y, latency_runs, batch_size)


def _evaluate_flatbuffer(flatbuffer, x, y, latency_runs, num_threads, op_resolver) -> dict:
    info = describe(flatbuffer)
    interp = _litert.make_interpreter(flatbuffer, num_threads=num_threads, op_resolver=op_resolver)
    t0 = time.perf_counter()
    logits = _litert.predict(interp, x)
    elapsed = time.perf_counter() - t0
    accuracy = float(np.mean(np.argmax(logits.reshape(len(x), -1), axis=-1) == y))

    single = interp if num_threads == 1 else _litert.make_interpreter(flatbuffer, 1, op_resolver)
    inp = single.get_input_details()[0]
    sample = _litert.quantize_input(x[:1], inp)
    single.set_tensor(inp["index"], sample)
    latency = _median_ms(single.invoke, latency_runs)
    logging.info("tflite: accuracy %.4f on %d samples, %d bytes", accuracy, len(x), info.size_bytes)
    return {
        "format": "tflite",
        "accuracy": accuracy,
        "num_samples": int(len(x)),
        "params": info.params,
        "nonzero_params": info.nonzero_params,
        "size_bytes": info.size_bytes,
        "gzip_bytes": gzip_size(flatbuffer),
        "macs": info.macs,
        "latency_ms": latency,
        "throughput_sps": float(len(x) / elapsed) if elapsed > 0 else float("inf"),
        "runtime": f"litert:{interp.kcompress_op_resolver}",
    }


def _evaluate_keras(model, x, y, latency_runs, batch_size) -> dict:
    t0 = time.perf_counter()
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    elapsed = time.perf_counter() - t0
    if isinstance(logits, (list, tuple)):
        logits = logits[0]
    accuracy = float(np.mean(np.argmax(np.reshape(logits, (len(x), -1)), axis=-1) == y))
    fn = tf.function(lambda t: model(t, training=False))
    sample = tf.constant(x[:1])
    latency = _median_ms(lambda: fn(sample), latency_runs)
    params, nonzero = keras_params(model)
    flat = to_tflite(model, "float32", verbose=False)
    return {
        "format": "keras",
        "accuracy": accuracy,
        "num_samples": int(len(x)),
        "params": params,
        "nonzero_params": nonzero,
        "size_bytes": len(flat),
        "gzip_bytes": gzip_size(flat),
        "macs": keras_macs(model),
        "latency_ms": latency,
        "throughput_sps": float(len(x) / elapsed) if elapsed > 0 else float("inf"),
        "runtime": "keras",
    }


def agreement(keras_model, flatbuffer, dataset: Dataset, max_samples: int | None = None) -> dict:
    """Compares a Keras model with its flatbuffer on the test set.

    Returns:
        dict: ``top1_agreement`` (fraction of samples with the same predicted class),
        ``max_logit_error`` and ``mean_logit_error`` (absolute, on dequantized
        outputs), ``keras_accuracy``, ``tflite_accuracy``, ``num_samples``.
    """
    keras_model = check_model(keras_model, "keras_model")
    x, y = _check_dataset(dataset, max_samples)
    k = np.reshape(keras_model.predict(x, batch_size=256, verbose=0), (len(x), -1))
    t = np.reshape(_litert.predict(flatbuffer, x), (len(x), -1))
    if k.shape != t.shape:
        raise ValueError(f"keras_model outputs {k.shape[1:]} but flatbuffer outputs {t.shape[1:]}.")
    err = np.abs(k - t)
    return {
        "top1_agreement": float(np.mean(np.argmax(k, -1) == np.argmax(t, -1))),
        "max_logit_error": float(err.max()),
        "mean_logit_error": float(err.mean()),
        "keras_accuracy": float(np.mean(np.argmax(k, -1) == y)),
        "tflite_accuracy": float(np.mean(np.argmax(t, -1) == y)),
        "num_samples": int(len(x)),
    }
