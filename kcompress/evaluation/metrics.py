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
from kcompress.validation import check_int

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


def _check_samples(dataset, max_samples) -> int:
    """Checks ``dataset`` and ``max_samples``; returns how many test samples are evaluated."""
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a kcompress.data.Dataset (from kcompress.data.load), got {type(dataset).__name__}.")
    check_int("max_samples", max_samples, minimum=1, allow_none=True)
    n = dataset.num_test
    if n == 0:
        raise ValueError(f"dataset {dataset.name!r} has an empty test split; evaluation needs test images.")
    return min(n, max_samples) if max_samples else n


def _check_dataset(dataset, max_samples):
    """The first ``max_samples`` test images and labels as arrays (an in-memory dataset only)."""
    n = _check_samples(dataset, max_samples)
    return dataset.x_test[:n], dataset.y_test[:n]


def keras_logits(model, batch_size: int = 256):
    """A function ``x -> logits`` (NumPy) running ``model`` on this process, batch by batch.

    Unlike ``model.predict`` it never distributes the call: under
    ``MultiWorkerMirroredStrategy`` every worker evaluates the whole test set by itself
    (cheap next to training) instead of gathering predictions across workers.
    """
    fn = tf.function(lambda t: model(t, training=False), reduce_retracing=True)

    def predict(x):
        outs = []
        for start in range(0, len(x), batch_size):
            out = fn(tf.constant(x[start:start + batch_size]))
            out = out[0] if isinstance(out, (list, tuple)) else out
            outs.append(np.reshape(out.numpy(), (len(out), -1)))
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)

    return predict


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
    _check_samples(dataset, max_samples)
    check_int("latency_runs", latency_runs, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    batches = dataset.test_batches(batch_size, max_samples)  # a streaming dataset is read batch by batch
    if isinstance(model_or_flatbuffer, (bytes, bytearray, memoryview)):
        return _evaluate_flatbuffer(bytes(model_or_flatbuffer), batches, latency_runs, num_threads, op_resolver)
    model = check_model(model_or_flatbuffer, "model_or_flatbuffer")
    return _evaluate_keras(model, batches, latency_runs, batch_size)


def _accuracy_pass(predict, batches):
    """(correct, count, seconds, first sample) over ``(x, y)`` batches."""
    correct = count = 0
    first, elapsed = None, 0.0
    for x, y in batches:
        if first is None:
            first = x[:1]
        t0 = time.perf_counter()
        logits = predict(x)
        elapsed += time.perf_counter() - t0
        correct += int(np.sum(np.argmax(np.reshape(logits, (len(x), -1)), axis=-1) == y))
        count += len(x)
    return correct, count, elapsed, first


def _evaluate_flatbuffer(flatbuffer, batches, latency_runs, num_threads, op_resolver) -> dict:
    info = describe(flatbuffer)
    interp = _litert.make_interpreter(flatbuffer, num_threads=num_threads, op_resolver=op_resolver)
    correct, n, elapsed, first = _accuracy_pass(lambda x: _litert.predict(interp, x), batches)
    accuracy = correct / n

    single = interp if num_threads == 1 else _litert.make_interpreter(flatbuffer, 1, op_resolver)
    inp = single.get_input_details()[0]
    sample = _litert.quantize_input(first, inp)
    single.set_tensor(inp["index"], sample)
    latency = _median_ms(single.invoke, latency_runs)
    logging.info("tflite: accuracy %.4f on %d samples, %d bytes", accuracy, n, info.size_bytes)
    return {
        "format": "tflite",
        "accuracy": accuracy,
        "num_samples": int(n),
        "params": info.params,
        "nonzero_params": info.nonzero_params,
        "size_bytes": info.size_bytes,
        "gzip_bytes": gzip_size(flatbuffer),
        "macs": info.macs,
        "latency_ms": latency,
        "throughput_sps": float(n / elapsed) if elapsed > 0 else float("inf"),
        "runtime": f"litert:{interp.kcompress_op_resolver}",
    }


def _evaluate_keras(model, batches, latency_runs, batch_size) -> dict:
    correct, n, elapsed, first = _accuracy_pass(keras_logits(model, batch_size), batches)
    accuracy = correct / n
    fn = tf.function(lambda t: model(t, training=False))
    sample = tf.constant(first)
    latency = _median_ms(lambda: fn(sample), latency_runs)
    params, nonzero = keras_params(model)
    flat = to_tflite(model, "float32", verbose=False)
    return {
        "format": "keras",
        "accuracy": accuracy,
        "num_samples": int(n),
        "params": params,
        "nonzero_params": nonzero,
        "size_bytes": len(flat),
        "gzip_bytes": gzip_size(flat),
        "macs": keras_macs(model),
        "latency_ms": latency,
        "throughput_sps": float(n / elapsed) if elapsed > 0 else float("inf"),
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
    _check_samples(dataset, max_samples)
    interp = _litert.make_interpreter(flatbuffer)
    run_keras = keras_logits(keras_model)
    same = k_right = t_right = n = 0
    max_err, sum_err, count_err = 0.0, 0.0, 0
    for x, y in dataset.test_batches(256, max_samples):  # streams when the dataset does
        k = run_keras(x)
        t = np.reshape(_litert.predict(interp, x), (len(x), -1))
        if k.shape != t.shape:
            raise ValueError(f"keras_model outputs {k.shape[1:]} but flatbuffer outputs {t.shape[1:]}.")
        err = np.abs(k - t)
        max_err, sum_err, count_err = max(max_err, float(err.max())), sum_err + float(err.sum()), count_err + err.size
        same += int(np.sum(np.argmax(k, -1) == np.argmax(t, -1)))
        k_right += int(np.sum(np.argmax(k, -1) == y))
        t_right += int(np.sum(np.argmax(t, -1) == y))
        n += len(x)
    return {
        "top1_agreement": same / n,
        "max_logit_error": max_err,
        "mean_logit_error": sum_err / count_err,
        "keras_accuracy": k_right / n,
        "tflite_accuracy": t_right / n,
        "num_samples": int(n),
    }
