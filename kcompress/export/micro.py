"""Microcontroller bundle: the C array, the op resolver registration and a tensor-arena estimate."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys

import numpy as np
from absl import logging
from ai_edge_litert import schema_py_generated as schema

from kcompress._files import write_atomic
from kcompress.export.c_array import _C_IDENTIFIER, to_c_array
from kcompress.export.flatbuffer import _OP_NAMES, _TYPES, check_flatbuffer
from kcompress.validation import check_bool, check_int

# TFLite builtin op -> the MicroMutableOpResolver method that registers its TFLite Micro kernel.
TFLM_METHODS = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax", "ARG_MIN": "AddArgMin",
    "AVERAGE_POOL_2D": "AddAveragePool2D", "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd", "BROADCAST_ARGS": "AddBroadcastArgs",
    "BROADCAST_TO": "AddBroadcastTo", "CAST": "AddCast", "CEIL": "AddCeil",
    "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D", "COS": "AddCos", "CUMSUM": "AddCumSum",
    "DEPTH_TO_SPACE": "AddDepthToSpace", "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv", "ELU": "AddElu", "EMBEDDING_LOOKUP": "AddEmbeddingLookup",
    "EQUAL": "AddEqual", "EXP": "AddExp", "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill",
    "FLOOR": "AddFloor", "FLOOR_DIV": "AddFloorDiv", "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected", "GATHER": "AddGather", "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual", "HARD_SWISH": "AddHardSwish", "IF": "AddIf",
    "L2_NORMALIZATION": "AddL2Normalization", "L2_POOL_2D": "AddL2Pool2D", "LEAKY_RELU": "AddLeakyRelu",
    "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual", "LOG": "AddLog", "LOG_SOFTMAX": "AddLogSoftmax",
    "LOGICAL_AND": "AddLogicalAnd", "LOGICAL_NOT": "AddLogicalNot", "LOGICAL_OR": "AddLogicalOr",
    "LOGISTIC": "AddLogistic", "MAX_POOL_2D": "AddMaxPool2D", "MAXIMUM": "AddMaximum", "MEAN": "AddMean",
    "MINIMUM": "AddMinimum", "MIRROR_PAD": "AddMirrorPad", "MUL": "AddMul", "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack", "PAD": "AddPad", "PADV2": "AddPadV2", "PRELU": "AddPrelu",
    "QUANTIZE": "AddQuantize", "REDUCE_MAX": "AddReduceMax", "REDUCE_MIN": "AddReduceMin", "RELU": "AddRelu",
    "RELU6": "AddRelu6", "RESHAPE": "AddReshape", "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor", "ROUND": "AddRound", "RSQRT": "AddRsqrt",
    "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape", "SIN": "AddSin", "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax", "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQRT": "AddSqrt", "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference", "SQUEEZE": "AddSqueeze", "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub", "SUM": "AddSum", "SVDF": "AddSvdf", "TANH": "AddTanh", "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv", "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "UNPACK": "AddUnpack", "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
}

# Arena overhead model, calibrated on TFLite Micro's RecordingMicroAllocator (see estimate_arena).
ALIGNMENT = 16
_EVAL_TENSOR_BYTES = 24          # TfLiteEvalTensor, one per tensor of the graph
_IO_TENSOR_BYTES = 96            # persistent TfLiteTensor + quantization struct per graph input/output
_NODE_BYTES = 64                 # NodeAndRegistration per operator
_OP_DATA_BYTES = 128             # kernel OpData per operator (upper end of what the kernels allocate)
_PER_CHANNEL_BYTES = 8           # int32 multiplier + shift per output channel of a quantized conv/dense
_FIXED_BYTES = 1024              # interpreter, subgraph and allocator bookkeeping
_CHANNEL_OPS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0, "TRANSPOSE_CONV": 0}


@dataclasses.dataclass(frozen=True)
class ArenaEstimate:
    """How many bytes of tensor arena TFLite Micro needs for a flatbuffer (an estimate).

    Attributes:
        arena_bytes: ``tensors_bytes + overhead_bytes``, rounded up to 16 bytes: the size to give
            ``MicroInterpreter`` first (then read ``arena_used_bytes()`` on the device).
        tensors_bytes: peak of the memory plan of the non-constant tensors (and kernel scratch).
        overhead_bytes: interpreter structures, per-op data and per-channel quantization data.
        largest_tensor_bytes: the largest single activation.
        input_bytes, output_bytes: sizes of the graph's input and output tensors.
    """

    arena_bytes: int
    tensors_bytes: int
    overhead_bytes: int
    largest_tensor_bytes: int
    input_bytes: int
    output_bytes: int


@dataclasses.dataclass(frozen=True)
class MicroBundle:
    """What :func:`to_micro` wrote and what firmware needs to know.

    Attributes:
        header_path, source_path: the C array (``.h`` / ``.cc``) from :func:`to_c_array`.
        resolver_path: ``<prefix>_resolver.h`` with the op registration and arena size.
        ops: TFLite builtin op names the model uses, sorted.
        resolver_methods: the ``MicroMutableOpResolver`` methods registering them.
        unsupported_ops: ops with no TFLite Micro kernel known to kcompress (empty unless ``strict=False``).
        arena: the :class:`ArenaEstimate`.
        resolver_snippet: the registration function's C++ source.
        measured_arena_bytes: the smallest arena the TFLite Micro interpreter ran the model in
            (:func:`measure_arena`), when the ``tflite-micro`` package is installed (the
            ``test`` extra); None otherwise.
    """

    header_path: str
    source_path: str
    resolver_path: str
    ops: tuple[str, ...]
    resolver_methods: tuple[str, ...]
    unsupported_ops: tuple[str, ...]
    arena: ArenaEstimate
    resolver_snippet: str
    measured_arena_bytes: int | None = None

    @property
    def arena_bytes(self) -> int:
        """The estimated tensor arena size in bytes."""
        return self.arena.arena_bytes


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def _op_names(model) -> list[str]:
    names = []
    for code in model.operatorCodes:
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
            names.append(f"CUSTOM:{custom}")
        else:
            names.append(_OP_NAMES.get(builtin, f"BUILTIN_{builtin}"))
    return names


def _is_constant(model, tensor) -> bool:
    buf = model.buffers[tensor.buffer] if 0 < tensor.buffer < len(model.buffers) else None
    if buf is None:
        return False
    return (buf.data is not None and len(buf.data) > 0) or bool(getattr(buf, "size", 0))


def _nbytes(tensor) -> int:
    shape = [max(int(d), 1) for d in (tensor.shape if tensor.shape is not None else [])]
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(_TYPES.get(tensor.type, np.float32)).itemsize


def _greedy_plan(buffers: list[tuple[int, int, int]]) -> int:
    """Peak bytes of TFLite Micro's greedy plan: largest buffers first, each at the lowest offset
    that does not collide with a placed buffer whose lifetime ``[first, last]`` overlaps."""
    placed: list[tuple[int, int, int, int]] = []  # offset, size, first, last
    order = sorted(range(len(buffers)), key=lambda i: (-buffers[i][0], buffers[i][1]))
    peak = 0
    for i in order:
        size, first, last = buffers[i]
        size = _align(size)
        offset = 0
        for p_off, p_size, _, _ in sorted(
                (p for p in placed if p[2] <= last and first <= p[3]), key=lambda p: p[0]):
            if offset + size <= p_off:
                break
            offset = max(offset, p_off + p_size)
        placed.append((offset, size, first, last))
        peak = max(peak, offset + size)
    return peak


def estimate_arena(flatbuffer) -> ArenaEstimate:
    """Estimates the TFLite Micro tensor arena a flatbuffer needs.

    The non-constant tensors (inputs, activations, outputs) are given lifetimes from the op
    order (from the op that writes a tensor to the last op that reads it; inputs from the
    start, outputs to the end) and placed like TFLite Micro's ``GreedyMemoryPlanner``: largest
    first, at the lowest offset free over its lifetime. An int8 ``CONV_2D`` also gets the
    im2col scratch buffer CMSIS-NN asks for (``2 * in_channels * kh * kw`` int16 values) for the
    op's duration; the reference kernels need none, so this errs on the large side.

    The interpreter's own structures are added as a documented margin: 24 bytes per tensor
    (``TfLiteEvalTensor``), 96 per graph input/output (persistent ``TfLiteTensor`` with its
    quantization), 64 + 128 per operator (node and registration; kernel ``OpData``), 8 per
    output channel of a quantized conv/dense (per-channel multiplier and shift) and 1 KiB fixed.
    Checked against the smallest arena the TFLite Micro interpreter (``tflite-micro`` 2026 wheel)
    accepts for the zoo models in float32 and int8: the estimate was 2-20% above it every time
    (LeNet-5 int8: 11,008 estimated, 10,248 needed). Treat it as the size to start with and read
    ``MicroInterpreter::arena_used_bytes()`` on the device.

    Args:
        flatbuffer: bytes of a ``.tflite`` model.

    Returns:
        An :class:`ArenaEstimate`.

    Example:
        >>> estimate_arena(flat).arena_bytes
        11008
    """
    data = check_flatbuffer(flatbuffer)
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    if not model.subgraphs:
        raise ValueError("flatbuffer holds no subgraph to plan.")
    graph = model.subgraphs[0]
    tensors = graph.tensors or []
    names = _op_names(model)
    operators = graph.operators or []
    n_ops = len(operators)
    inputs = [int(i) for i in (graph.inputs if graph.inputs is not None else [])]
    outputs = [int(i) for i in (graph.outputs if graph.outputs is not None else [])]
    first: dict[int, int] = {i: 0 for i in inputs}
    last: dict[int, int] = {i: 0 for i in inputs}
    for i in outputs:
        last[i] = max(n_ops - 1, 0)
    buffers = []
    channels = 0
    for k, op in enumerate(operators):
        op_in = [int(i) for i in (op.inputs if op.inputs is not None else []) if i >= 0]
        op_out = [int(i) for i in (op.outputs if op.outputs is not None else []) if i >= 0]
        for i in op_in:
            if not _is_constant(model, tensors[i]):
                first.setdefault(i, k)
                last[i] = max(last.get(i, k), k)
        for i in op_out:
            first.setdefault(i, k)
            last[i] = max(last.get(i, k), k)
        name = names[op.opcodeIndex]
        quantized = op_in and tensors[op_in[0]].type in (schema.TensorType.INT8, schema.TensorType.INT16)
        if name in _CHANNEL_OPS and quantized and len(op_in) > 1:
            shape = tensors[op_in[1]].shape
            if shape is not None and len(shape):
                channels += int(shape[_CHANNEL_OPS[name]])
        if name == "CONV_2D" and quantized and len(op_in) > 1:
            w = [int(d) for d in tensors[op_in[1]].shape]  # [out_c, kh, kw, in_c]
            if len(w) == 4 and (w[1], w[2]) != (1, 1):
                buffers.append((2 * w[3] * w[1] * w[2] * 2, k, k))
    activations = [i for i in first if not _is_constant(model, tensors[i])]
    buffers.extend((_nbytes(tensors[i]), first[i], last[i]) for i in activations)
    planned = _greedy_plan(buffers) if buffers else 0
    overhead = (_EVAL_TENSOR_BYTES * len(tensors) + _IO_TENSOR_BYTES * (len(inputs) + len(outputs))
                + (_NODE_BYTES + _OP_DATA_BYTES) * n_ops + _PER_CHANNEL_BYTES * channels + _FIXED_BYTES)
    return ArenaEstimate(
        arena_bytes=_align(planned + overhead),
        tensors_bytes=planned,
        overhead_bytes=overhead,
        largest_tensor_bytes=max((_nbytes(tensors[i]) for i in activations), default=0),
        input_bytes=sum(_nbytes(tensors[i]) for i in inputs),
        output_bytes=sum(_nbytes(tensors[i]) for i in outputs),
    )


# TFLite Micro places its allocator in the arena; below about 600 bytes the runtime aborts the
# process instead of failing the allocation, so the search never tries less than this.
_MIN_ARENA = 1024
# The tflite-micro wheel kcompress's tests run bundles in (the `test` extra of setup.cfg pins it).
TFLM_PACKAGE = "tflite-micro==0.dev20261023182759"


def _tflm():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as err:
        raise ImportError(
            f"running a flatbuffer in TFLite Micro needs the tflite-micro package: pip install '{TFLM_PACKAGE}' "
            "(or pip install 'kcompress[test]')."
        ) from err
    return runtime


@contextlib.contextmanager
def _quiet_stderr():
    """TFLite Micro prints every failed allocation to file descriptor 2; a search for the arena makes many."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _micro_interpreter(data, arena_size):
    runtime = _tflm()
    interp = runtime.Interpreter.from_bytes(data, arena_size=int(arena_size))
    detail = interp.get_input_details(0)
    interp.set_input(np.zeros(tuple(int(d) for d in detail["shape"]), detail["dtype"]), 0)
    interp.invoke()
    return interp


def measure_arena(flatbuffer) -> int:
    """The smallest tensor arena, in bytes (16-byte steps, at least 1 KiB), with which TFLite Micro runs ``flatbuffer``.

    Measured, not estimated: the TFLite Micro interpreter (``tflite-micro`` Python package,
    reference kernels) allocates and invokes the model at each size of a binary search. Compare it
    with :func:`estimate_arena`, the size to start firmware with.

    Raises:
        ImportError: tflite-micro is not installed (the message gives the pip command).
        ValueError: not a flatbuffer, or TFLite Micro cannot run it even with 64 MiB.
    """
    data = check_flatbuffer(flatbuffer)
    _tflm()
    hi = max(_align(estimate_arena(data).arena_bytes), 4096)
    with _quiet_stderr():
        while not _fits(data, hi):
            hi *= 2
            if hi > 64 << 20:
                raise ValueError("TFLite Micro cannot run this flatbuffer even with a 64 MiB arena (an op it has no "
                                 "kernel for, or a dynamic shape); export it with mode='int8' and sparse=False.")
        if _fits(data, _MIN_ARENA):
            return _MIN_ARENA
        lo = _MIN_ARENA
        while hi - lo > ALIGNMENT:
            mid = _align((lo + hi) // 2)
            if mid >= hi:
                break
            lo, hi = (lo, mid) if _fits(data, mid) else (mid, hi)
    return hi


def _fits(data, size) -> bool:
    try:
        _micro_interpreter(data, size)
        return True
    except RuntimeError:
        return False


def run_micro(flatbuffer, x, arena_size: int | None = None) -> np.ndarray:
    """Runs a batch-1 flatbuffer on every row of ``x`` in the TFLite Micro interpreter.

    Inputs are quantized with the input tensor's own scale and zero point (as
    ``kcompress.evaluation.predict`` does for LiteRT); outputs are returned raw, in the output
    tensor's dtype (int8 for an int8 model), so they can be compared with LiteRT's bit for bit.

    Args:
        flatbuffer: bytes of a ``.tflite`` model.
        x: float inputs of shape ``(n, *input_shape)``, scaled as at training.
        arena_size: tensor arena bytes (default: twice :func:`estimate_arena`).

    Returns:
        Array of shape ``(n, *output_shape)``.

    Raises:
        ImportError: tflite-micro is not installed.
        ValueError: not a flatbuffer, ``x`` of the wrong shape, or an arena too small.
    """
    from kcompress.evaluation.litert import quantize_input

    data = check_flatbuffer(flatbuffer)
    arena_size = check_int("arena_size", arena_size, minimum=_MIN_ARENA, allow_none=True)
    if arena_size is None:
        arena_size = 2 * estimate_arena(data).arena_bytes
    try:
        with _quiet_stderr():
            interp = _micro_interpreter(data, arena_size)
    except RuntimeError as err:
        raise ValueError(f"TFLite Micro cannot run this flatbuffer with arena_size={arena_size} ({err}); "
                         "measure_arena(flatbuffer) gives the size it needs.") from err
    detail, out = interp.get_input_details(0), interp.get_output_details(0)
    x = np.asarray(x)
    expected = tuple(int(d) for d in detail["shape"][1:])
    if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
        raise ValueError(f"x must have shape (n, {', '.join(map(str, expected))}), got {x.shape}.")
    params = detail["quantization_parameters"]
    scale = float(params["scales"][0]) if len(params["scales"]) else 0.0
    zero = int(params["zero_points"][0]) if len(params["zero_points"]) else 0
    q = quantize_input(x, {"dtype": detail["dtype"], "quantization": (scale, zero), "name": "input"})
    outputs = np.empty((len(x), *(int(d) for d in out["shape"][1:])), out["dtype"])
    for i in range(len(x)):
        interp.set_input(q[i : i + 1], 0)
        interp.invoke()
        outputs[i] = interp.get_output(0)[0]
    return outputs


def resolver_methods(ops) -> tuple[list[str], list[str]]:
    """Maps TFLite op names to ``MicroMutableOpResolver`` methods.

    Returns:
        ``(methods, unsupported)``: the ``Add...`` method names in the order of ``ops``, and the
        ops with no TFLite Micro kernel known to kcompress (custom ops included).
    """
    methods, unsupported = [], []
    for op in ops:
        if op in TFLM_METHODS:
            methods.append(TFLM_METHODS[op])
        else:
            unsupported.append(op)
    return methods, unsupported


def to_micro(flatbuffer, path_prefix: str | os.PathLike, name: str = "g_model", strict: bool = True) -> MicroBundle:
    """Writes everything TFLite Micro firmware needs to run a flatbuffer.

    Three files: ``<prefix>.h`` / ``<prefix>.cc`` with the model as an aligned C array and its
    input/output quantization (:func:`to_c_array`), and ``<prefix>_resolver.h`` with
    ``<name>_op_count``, ``<name>_arena_size`` (see :func:`estimate_arena`) and
    ``<name>_register_ops(tflite::MicroMutableOpResolver<<name>_op_count>&)``, which adds exactly
    the kernels the model uses, so the firmware links no others.

    Args:
        flatbuffer: bytes of a ``.tflite`` model (usually ``mode="int8"``).
        path_prefix: path without extension, e.g. ``"firmware/model_data"``.
        name: C identifier of the array; prefixes the other symbols.
        strict: raise when an op has no TFLite Micro kernel known to kcompress; with
            ``False`` such ops are listed in ``unsupported_ops`` and as comments.

    Returns:
        A :class:`MicroBundle`.

    Raises:
        ValueError: not a flatbuffer, a bad ``name`` or ``path_prefix``, or (when ``strict``)
            ops TFLite Micro cannot run, e.g. ``DENSIFY`` from ``sparse=True``.

    Example:
        >>> bundle = to_micro(kc.export.to_tflite(qat, "int8"), "firmware/model_data")
        >>> bundle.ops, bundle.arena_bytes
        (('CONV_2D', 'FULLY_CONNECTED', 'MAX_POOL_2D', 'RESHAPE'), 11008)
    """
    data = check_flatbuffer(flatbuffer)
    if not isinstance(name, str) or not _C_IDENTIFIER.match(name):
        raise ValueError(f"name must be a C identifier ([A-Za-z_][A-Za-z0-9_]*), got {name!r}.")
    check_bool("strict", strict)
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    names = _op_names(model)
    used = sorted({names[op.opcodeIndex] for graph in model.subgraphs for op in (graph.operators or [])})
    methods, unsupported = resolver_methods(used)
    if unsupported:
        message = (f"TFLite Micro has no kernel known to kcompress for {unsupported} (ops used: {used}); "
                   "export with kc.export.to_tflite(model, 'int8') and sparse=False for microcontrollers")
        if strict:
            raise ValueError(message + ", or pass strict=False to write the bundle anyway.")
        logging.warning("%s.", message)
    prefix = os.fspath(path_prefix)
    header_path, source_path = to_c_array(data, prefix, name=name)
    arena = estimate_arena(data)
    header_name = os.path.basename(prefix) + "_resolver.h"
    guard = re.sub(r"[^A-Za-z0-9]", "_", header_name).upper() + "_"
    body = [f"  if (resolver.{m}() != kTfLiteOk) return kTfLiteError;" for m in methods]
    body += [f"  // {op}: no TFLite Micro kernel known; register it yourself (AddCustom) or re-export."
             for op in unsupported]
    snippet = "\n".join([
        f"inline TfLiteStatus {name}_register_ops(tflite::MicroMutableOpResolver<{name}_op_count>& resolver) {{",
        *body,
        "  return kTfLiteOk;",
        "}",
    ])
    resolver = "\n".join([
        "// Generated by kcompress.export.to_micro. Do not edit.",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#include <cstddef>",
        "",
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"',
        "",
        f"// Operators {name} uses: {', '.join(used)}",
        f"constexpr unsigned int {name}_op_count = {max(len(methods), 1)};",
        f"// Estimated tensor arena: {arena.tensors_bytes} bytes of planned tensors + {arena.overhead_bytes} bytes",
        "// of interpreter overhead (kcompress.export.estimate_arena). Check with",
        "// MicroInterpreter::arena_used_bytes() on the device and trim.",
        f"constexpr std::size_t {name}_arena_size = {arena.arena_bytes};",
        "",
        snippet,
        "",
        f"#endif  // {guard}",
        "",
    ])
    resolver_path = write_atomic(prefix + "_resolver.h", resolver)
    measured = None
    if not unsupported:
        try:
            measured = measure_arena(data)
        except ImportError:
            logging.info("tflite-micro is not installed: the bundle's arena is estimated only (%s).", TFLM_PACKAGE)
        else:
            logging.info("TFLite Micro arena: %d bytes measured, %d estimated.", measured, arena.arena_bytes)
    return MicroBundle(
        header_path=header_path,
        source_path=source_path,
        resolver_path=resolver_path,
        ops=tuple(used),
        resolver_methods=tuple(methods),
        unsupported_ops=tuple(unsupported),
        arena=arena,
        resolver_snippet=snippet,
        measured_arena_bytes=measured,
    )
