"""Evaluation: accuracy (Keras and LiteRT), sizes (incl. the entropy-coded size), MACs, latency,
Keras/flatbuffer agreement, robustness."""

from kcompress.evaluation.entropy import (
    ENCODINGS,
    EntropyReport,
    TensorEntropy,
    entropy_coded_size,
    quantize_levels,
)
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
    "ENCODINGS", "KEYS", "OP_RESOLVERS", "PERTURBATIONS", "EntropyReport", "TensorEntropy", "agreement",
    "compare_latency", "entropy_coded_size", "evaluate", "gzip_size", "keras_macs", "keras_params",
    "make_interpreter", "perturb", "predict", "quantize_levels", "robustness",
]
