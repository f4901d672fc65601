"""Export: TFLite flatbuffers in every post-training mode, atomic saves, C arrays for TFLite Micro."""

from kcompress.export.c_array import to_c_array
from kcompress.export.flatbuffer import FlatbufferInfo, TensorIO, describe
from kcompress.export.tflite import MODES, representative_dataset, save, to_tflite, write_atomic

__all__ = ["MODES", "FlatbufferInfo", "TensorIO", "describe", "representative_dataset", "save", "to_c_array", "to_tflite", "write_atomic"]
