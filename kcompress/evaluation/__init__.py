"""Evaluation: accuracy (Keras and LiteRT), sizes, MACs, latency, Keras/flatbuffer agreement, robustness."""

from kcompress.evaluation.latency import compare_latency
from kcompress.evaluation.litert import OP_RESOLVERS, make_interpreter, predict
from kcompress.evaluation.metrics import (
    KEYS,
    agreement,
    evaluate,
    gzip_size,
    keras_macs,
    keras_params,
)
from kcompress.evaluation.robustness import PERTURBATIONS, perturb, robustness

__all__ = [
    "KEYS", "OP_RESOLVERS", "PERTURBATIONS", "agreement", "compare_latency", "evaluate", "gzip_size", "keras_macs", "keras_params", "make_interpreter", "perturb", "predict", "robustness",
]
