"""Running flatbuffers in the LiteRT interpreter, with input quantization done right."""

from __future__ import annotations

import numpy as np
from absl import logging
from ai_edge_litert import interpreter as litert

from kcompress.export.flatbuffer import check_flatbuffer
from kcompress.validation import check_choice, check_int

OP_RESOLVERS = {
    "auto": litert.OpResolverType.AUTO,
    "builtin": litert.OpResolverType.BUILTIN,
    "builtin_ref": litert.OpResolverType.BUILTIN_REF,
    "builtin_without_default_delegates": litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
}


def make_interpreter(flatbuffer, num_threads: int = 1, op_resolver: str = "auto") -> litert.Interpreter:
    """Builds an allocated LiteRT interpreter for ``flatbuffer``.

    Args:
        flatbuffer: bytes of a ``.tflite`` model.
        num_threads: interpreter threads (1 for honest single-core latency).
        op_resolver: one of :data:`OP_RESOLVERS`; ``builtin_without_default_delegates``
            runs graphs the default XNNPACK delegate rejects (e.g. sparse int8).
            With ``"auto"``, such a graph falls back to the builtin kernels with a
            warning; the resolver used is in ``interpreter.kcompress_op_resolver``.
    """
    data = check_flatbuffer(flatbuffer)
    check_int("num_threads", num_threads, minimum=1)
    check_choice("op_resolver", op_resolver, sorted(OP_RESOLVERS))
    try:
        interp = litert.Interpreter(
            model_content=data, num_threads=num_threads, experimental_op_resolver_type=OP_RESOLVERS[op_resolver]
        )
        interp.allocate_tensors()
        interp.kcompress_op_resolver = op_resolver
    except RuntimeError as err:
        if op_resolver != "auto" or "delegate" not in str(err).lower():
            raise
        # XNNPACK (the default delegate) rejects some graphs, e.g. sparse int8 weights;
        # the builtin kernels run them.
        logging.warning(
            "LiteRT's default delegate cannot run this flatbuffer (%s); running it with the builtin "
            "kernels instead (op_resolver='builtin_without_default_delegates'), which are slower.",
            str(err).splitlines()[0][:200],
        )
        interp = make_interpreter(data, num_threads, "builtin_without_default_delegates")
    return interp


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """Maps float input to the tensor's dtype with its own scale and zero point."""
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype)
    scale, zero_point = detail["quantization"]
    if scale == 0:
        raise ValueError(f"input tensor {detail['name']!r} is {np.dtype(dtype).name} without quantization parameters.")
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize_output(y: np.ndarray, detail: dict) -> np.ndarray:
    """Maps a quantized output back to float with the tensor's scale and zero point."""
    if np.issubdtype(detail["dtype"], np.floating):
        return y.astype(np.float32)
    scale, zero_point = detail["quantization"]
    return (y.astype(np.float32) - zero_point) * scale


def predict(flatbuffer_or_interpreter, x: np.ndarray, num_threads: int = 1, op_resolver: str = "auto") -> np.ndarray:
    """Runs a batch-1 flatbuffer on every row of ``x`` and returns float outputs.

    Args:
        flatbuffer_or_interpreter: flatbuffer bytes or an interpreter from :func:`make_interpreter`.
        x: float inputs, shape ``(n, *input_shape)``, scaled as at training.

    Returns:
        float32 array ``(n, *output_shape)``, dequantized when the output is quantized.
    """
    interp = (flatbuffer_or_interpreter if isinstance(flatbuffer_or_interpreter, litert.Interpreter)
              else make_interpreter(flatbuffer_or_interpreter, num_threads, op_resolver))
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    x = np.asarray(x)
    expected = tuple(int(d) for d in inp["shape"][1:])
    if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
        raise ValueError(f"x must have shape (n, {', '.join(map(str, expected))}), got {x.shape}.")
    q = quantize_input(x, inp)
    outputs = np.empty((len(x), *out["shape"][1:]), np.float32)
    for i in range(len(x)):
        interp.set_tensor(inp["index"], q[i : i + 1])
        interp.invoke()
        outputs[i] = dequantize_output(interp.get_tensor(out["index"])[0], out)
    return outputs
