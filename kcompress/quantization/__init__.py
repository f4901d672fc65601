"""Quantization: quantization-aware training (QAT), sparsity-preserving QAT.

Post-training quantization (dynamic range, full-integer int8/uint8, float16, int16x8) is a
conversion option: ``kcompress.export.to_tflite(model, mode=...)``.
"""

from kcompress.quantization.qat import (
    SPARSE_THRESHOLD,
    kernel_sparsity,
    quantize_aware,
    quantize_scope,
    unsupported_layers,
)

# The SparsityPreserving* quantizers and configs, which QAT models hold and Keras loads by their
# registered names, stay in kcompress.quantization.qat: nobody builds them by hand.
__all__ = [
    "SPARSE_THRESHOLD",
    "kernel_sparsity",
    "quantize_aware",
    "quantize_scope",
    "unsupported_layers",
]
