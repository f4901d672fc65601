"""Export: TFLite flatbuffers in every post-training mode, atomic saves, C arrays and bundles for TFLite Micro."""

from kcompress.export.c_array import to_c_array
from kcompress.export.flatbuffer import FlatbufferInfo, TensorIO, describe
from kcompress.export.micro import (
    TFLM_METHODS,
    ArenaEstimate,
    MicroBundle,
    estimate_arena,
    measure_arena,
    run_micro,
    to_micro,
)
from kcompress.export.slim import slim
from kcompress.export.tflite import MODES, representative_dataset, save, to_tflite, write_atomic

__all__ = [
    "MODES", "TFLM_METHODS", "ArenaEstimate", "FlatbufferInfo", "MicroBundle", "TensorIO", "describe", "estimate_arena", "measure_arena",
    "representative_dataset", "run_micro", "save", "slim", "to_c_array", "to_micro", "to_tflite", "write_atomic",
]
