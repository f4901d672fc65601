"""Latency comparisons that survive a noisy machine: interleaved rounds in one process."""

from __future__ import annotations

import time

import numpy as np

from kcompress.evaluation import litert as _litert
from kcompress.validation import check_int


def compare_latency(flatbuffers: dict, x: np.ndarray, *, reference: str | None = None, rounds: int = 30,
                    runs_per_round: int = 50, warmup: int = 50, op_resolver: str = "auto",
                    num_threads: int = 1) -> dict[str, dict]:
    """Times several flatbuffers against each other, interleaved, in one process.

    Timing each variant in its own block lets a burst of load from other processes land on
    one variant only, which can flip a ratio (on a shared 2-core machine one LeNet-5 run read
    int8/float32 = 0.79x, another 1.46x). Here every round times each variant for
    ``runs_per_round`` single-sample invocations, in an order that rotates each round, and a
    ratio is taken per round, so load hits every variant alike; the reported ratio is the
    median over rounds with its 5th-95th percentile spread.

    Args:
        flatbuffers: ``{variant: flatbuffer bytes}``.
        x: float inputs ``(n, *input_shape)`` scaled as at training; the first sample is used
            (quantized for each flatbuffer with its own scale and zero point).
        reference: the variant ratios are taken against (default: the first).
        rounds: interleaved rounds.
        runs_per_round: timed invocations per variant per round.
        warmup: untimed invocations per variant before the first round.
        op_resolver: LiteRT op resolver (``kcompress.evaluation.OP_RESOLVERS``): ``auto``
            applies the default XNNPACK delegate; ``builtin_without_default_delegates`` runs
            TFLite's own kernels, closer to what TFLite Micro does.
        num_threads: interpreter threads.

    Returns:
        ``{variant: {"latency_ms", "latency_ms_p05", "latency_ms_p95", "latency_ratio",
        "latency_ratio_p05", "latency_ratio_p95", "rounds", "op_resolver"}}``; latencies are
        medians of per-round medians, in milliseconds; ``op_resolver`` is the one that ran.

    Example:
        >>> r = compare_latency({"float32": f32, "int8": i8}, ds.x_test)
        >>> r["int8"]["latency_ratio"]
        0.97
    """
    if not isinstance(flatbuffers, dict) or not flatbuffers:
        raise ValueError(f"flatbuffers must be a non-empty dict {{variant: bytes}}, got {type(flatbuffers).__name__}.")
    reference = next(iter(flatbuffers)) if reference is None else reference
    if reference not in flatbuffers:
        raise ValueError(f"reference must be one of {list(flatbuffers)}, got {reference!r}.")
    for argname, value, low in (("rounds", rounds, 1), ("runs_per_round", runs_per_round, 1), ("warmup", warmup, 0)):
        check_int(argname, value, minimum=low)
    x = np.asarray(x)
    interpreters = {}
    for variant, flat in flatbuffers.items():
        interp = _litert.make_interpreter(flat, num_threads=num_threads, op_resolver=op_resolver)
        inp = interp.get_input_details()[0]
        expected = tuple(int(d) for d in inp["shape"][1:])
        if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected or len(x) == 0:
            raise ValueError(f"x must have shape (n, {', '.join(map(str, expected))}) for {variant!r}, got {x.shape}.")
        interp.set_tensor(inp["index"], _litert.quantize_input(x[:1], inp))
        for _ in range(warmup):
            interp.invoke()
        interpreters[variant] = interp
    names = list(interpreters)
    per_round = {v: np.empty(rounds) for v in names}
    times = np.empty(runs_per_round)
    for r in range(rounds):
        shift = r % len(names)
        for variant in names[shift:] + names[:shift]:
            invoke = interpreters[variant].invoke
            for i in range(runs_per_round):
                t0 = time.perf_counter()
                invoke()
                times[i] = time.perf_counter() - t0
            per_round[variant][r] = np.median(times) * 1e3
    out = {}
    for variant in names:
        ms = per_round[variant]
        ratios = ms / per_round[reference]
        out[variant] = {
            "latency_ms": float(np.median(ms)),
            "latency_ms_p05": float(np.percentile(ms, 5)),
            "latency_ms_p95": float(np.percentile(ms, 95)),
            "latency_ratio": float(np.median(ratios)),
            "latency_ratio_p05": float(np.percentile(ratios, 5)),
            "latency_ratio_p95": float(np.percentile(ratios, 95)),
            "rounds": rounds,
            # make_interpreter falls back from XNNPACK for graphs it rejects (e.g. sparse int8).
            "op_resolver": getattr(interpreters[variant], "kcompress_op_resolver", op_resolver),
        }
    return out
