"""Reads a TFLite flatbuffer without running it: tensors, weights, ops, MACs, I/O quantization."""

from __future__ import annotations

import dataclasses

import numpy as np
from ai_edge_litert import interpreter as _litert
from ai_edge_litert import schema_py_generated as schema

_TYPES = {
    schema.TensorType.FLOAT32: np.float32,
    schema.TensorType.FLOAT16: np.float16,
    schema.TensorType.INT32: np.int32,
    schema.TensorType.UINT8: np.uint8,
    schema.TensorType.INT64: np.int64,
    schema.TensorType.INT16: np.int16,
    schema.TensorType.INT8: np.int8,
    schema.TensorType.BOOL: np.bool_,
}
_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
# Ops whose constant inputs at these positions are trainable weights (kernel, bias).
_WEIGHT_INPUTS = {
    "CONV_2D": (1, 2),
    "DEPTHWISE_CONV_2D": (1, 2),
    "FULLY_CONNECTED": (1, 2),
    "TRANSPOSE_CONV": (1, 3),
    "CONV_3D": (1, 2),
    "CONV_3D_TRANSPOSE": (1, 3),
    "BATCH_MATMUL": (1,),
}


@dataclasses.dataclass(frozen=True)
class TensorIO:
    """One model input or output: name, shape, dtype and affine quantization (0.0/0 if float)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int


@dataclasses.dataclass(frozen=True)
class FlatbufferInfo:
    """What a flatbuffer holds, read from its schema.

    Attributes:
        size_bytes: length of the flatbuffer.
        params: elements of the weight tensors (kernels and biases of conv/dense ops);
            for sparse tensors, the dense element count.
        nonzero_params: weight elements that are not zero (not the zero point, when quantized).
        macs: multiply-accumulates of one inference (conv 2-D / 3-D, depthwise, transposed conv,
            fully connected and batch-matmul ops).
        ops: operator names in execution order.
        inputs, outputs: :class:`TensorIO` for each.
        sparse_tensors: number of weight tensors stored in a sparse encoding.
        weight_dtypes: dtype names of the weight tensors, with counts.
    """

    size_bytes: int
    params: int
    nonzero_params: int
    macs: int
    ops: tuple[str, ...]
    inputs: tuple[TensorIO, ...]
    outputs: tuple[TensorIO, ...]
    sparse_tensors: int
    weight_dtypes: dict

    @property
    def op_set(self) -> list[str]:
        """Distinct operator names, sorted (what a TFLite Micro op resolver must register)."""
        return sorted(set(self.ops))


def check_flatbuffer(flatbuffer, argname: str = "flatbuffer") -> bytes:
    """Returns ``flatbuffer`` as bytes after checking it is a structurally valid TFLite model.

    Beyond the ``TFL3`` identifier, the buffer goes through LiteRT's own model check (the
    flatbuffers verifier its interpreter runs before loading a model), so a truncated file or
    garbled tables are refused here rather than failing later inside a struct unpack. Garbled
    weight bytes inside valid tables cannot be told from real weights by any structural check.

    Raises:
        TypeError: not bytes.
        ValueError: no TFLite identifier, or a buffer the verifier rejects.
    """
    if not isinstance(flatbuffer, (bytes, bytearray, memoryview)):
        raise TypeError(f"{argname} must be the bytes of a .tflite flatbuffer, got {type(flatbuffer).__name__}.")
    data = bytes(flatbuffer)
    # The schema's own identifier check ("TFL3" at bytes 4..8; False for a buffer too short to hold it).
    if not schema.Model.ModelBufferHasIdentifier(data, 0):
        raise ValueError(
            f"{argname} is not a TFLite flatbuffer (expected the TFLite schema's file identifier b'TFL3' at "
            f"bytes 4..8, got {data[4:8]!r} in {len(data)} bytes)."
        )
    try:
        _litert.Interpreter(model_content=data,
                            experimental_op_resolver_type=_litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    except ValueError as err:
        raise ValueError(
            f"{argname} is a damaged TFLite flatbuffer ({len(data)} bytes): LiteRT's verifier rejects it ({err}). "
            "The file is probably truncated or corrupted; export it again with kcompress.export.to_tflite."
        ) from err
    except RuntimeError:
        pass  # a valid structure with ops this interpreter cannot resolve: not our concern here
    return data


def _quant(tensor) -> tuple[float, int]:
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return 0.0, 0
    zp = q.zeroPoint if q.zeroPoint is not None and len(q.zeroPoint) else [0]
    return float(q.scale[0]), int(zp[0])


def _buffer_array(model, tensor, data: bytes):
    buf = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    if buf is None:
        return None
    if buf.data is not None and len(buf.data):
        raw = np.asarray(buf.data, dtype=np.uint8).tobytes()
    elif getattr(buf, "offset", 0) and getattr(buf, "size", 0):
        raw = data[buf.offset : buf.offset + buf.size]
    else:
        return None
    dtype = _TYPES.get(tensor.type)
    if dtype is None:
        return None
    return np.frombuffer(raw, dtype=dtype)


def describe(flatbuffer) -> FlatbufferInfo:
    """Reads weights, operators, MACs and I/O quantization of a TFLite flatbuffer.

    Args:
        flatbuffer: bytes of a ``.tflite`` model.

    Returns:
        A :class:`FlatbufferInfo`.

    Example:
        >>> info = describe(kcompress.export.to_tflite(model))
        >>> info.params, info.macs, info.op_set
    """
    data = check_flatbuffer(flatbuffer)
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    codes = []
    for code in model.operatorCodes:
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        codes.append(_OP_NAMES.get(builtin, f"CUSTOM:{code.customCode}") if builtin != schema.BuiltinOperator.CUSTOM
                     else f"CUSTOM:{(code.customCode or b'').decode() if isinstance(code.customCode, bytes) else code.customCode}")
    graph = model.subgraphs[0]
    tensors = graph.tensors
    ops, params, nonzero, macs, sparse = [], 0, 0, 0, 0
    dtypes: dict[str, int] = {}
    seen: set[int] = set()
    for op in graph.operators or []:
        name = codes[op.opcodeIndex]
        ops.append(name)
        inputs = list(op.inputs) if op.inputs is not None else []
        outputs = list(op.outputs) if op.outputs is not None else []
        for pos in _WEIGHT_INPUTS.get(name, ()):
            if pos >= len(inputs) or inputs[pos] < 0 or inputs[pos] in seen:
                continue
            t = tensors[inputs[pos]]
            values = _buffer_array(model, t, data)
            source = inputs[pos]
            while values is None:
                # The weight may come through DEQUANTIZE (float16) and/or DENSIFY (sparse) ops.
                source = _producer(graph, source, codes)
                if source is None:
                    break
                t = tensors[source]
                values = _buffer_array(model, t, data)
                seen.add(source)
            if values is None:
                continue
            seen.add(inputs[pos])
            count = int(np.prod(t.shape)) if t.shape is not None and len(t.shape) else values.size
            _, zp = _quant(t)
            if t.sparsity is not None:
                sparse += 1
                nz = int(np.count_nonzero(values != zp))
            else:
                nz = int(np.count_nonzero(values != zp))
            params += count
            nonzero += nz
            key = np.dtype(_TYPES[t.type]).name
            dtypes[key] = dtypes.get(key, 0) + count
        macs += _macs(name, inputs, outputs, tensors)
    return FlatbufferInfo(
        size_bytes=len(data),
        params=params,
        nonzero_params=nonzero,
        macs=macs,
        ops=tuple(ops),
        inputs=tuple(_io(tensors[i]) for i in graph.inputs),
        outputs=tuple(_io(tensors[i]) for i in graph.outputs),
        sparse_tensors=sparse,
        weight_dtypes=dtypes,
    )


def _producer(graph, tensor_index, codes):
    for op in graph.operators or []:
        if (op.outputs is not None and tensor_index in list(op.outputs)
                and codes[op.opcodeIndex] in ("DEQUANTIZE", "DENSIFY")):
            return int(op.inputs[0])
    return None


def _io(tensor) -> TensorIO:
    scale, zp = _quant(tensor)
    name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
    return TensorIO(name, tuple(int(d) for d in tensor.shape), np.dtype(_TYPES[tensor.type]), scale, zp)


def _macs(name, inputs, outputs, tensors) -> int:
    if not outputs or len(inputs) < 2:
        return 0
    out = tensors[outputs[0]].shape
    w = tensors[inputs[1]].shape
    if out is None or w is None:
        return 0
    out, w = [int(d) for d in out], [int(d) for d in w]
    if name == "CONV_2D":  # filter [out_c, kh, kw, in_c]
        return int(np.prod(out)) * w[1] * w[2] * w[3]
    if name == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, out_c]
        return int(np.prod(out)) * w[1] * w[2]
    if name == "FULLY_CONNECTED":  # weights [units, in]
        return int(np.prod(out)) * w[-1]
    if name == "CONV_3D":  # filter [kd, kh, kw, in_c, out_c]
        return int(np.prod(out)) * w[0] * w[1] * w[2] * w[3]
    if name in ("TRANSPOSE_CONV", "CONV_3D_TRANSPOSE") and len(inputs) > 2:
        # inputs: output shape, filter, input; each input element is scattered over the kernel x filters.
        x = tensors[inputs[2]].shape
        if x is None:
            return 0
        kernel = w[1] * w[2] if name == "TRANSPOSE_CONV" else w[0] * w[1] * w[2]  # [out_c, kh, kw, in_c] / [kd, kh, kw, out_c, in_c]
        filters = w[0] if name == "TRANSPOSE_CONV" else w[3]
        return int(np.prod([int(d) for d in x])) * kernel * filters
    if name == "BATCH_MATMUL":  # [..., m, k] x [..., k, n]
        x = tensors[inputs[0]].shape
        return int(np.prod(out)) * int(x[-1]) if x is not None and len(x) else 0
    return 0
