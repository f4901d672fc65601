"""kcompress: Keras-native model compression with honest measurements.

Example:
    >>> import kcompress as kc
    >>> ds = kc.data.load("mnist")
    >>> model = kc.models.get("lenet5", ds.input_shape, ds.num_classes)
    >>> flat = kc.export.to_tflite(model, mode="int8",
    ...                            representative_data=ds.representative(200))
    >>> kc.evaluation.evaluate(flat, ds)["accuracy"]
"""

__version__ = "0.1.0"

# _keras first: it sets TF_USE_LEGACY_KERAS before TensorFlow loads.
from kcompress import _keras  # noqa: F401, I001
from kcompress import (
    clustering,
    compression,
    data,
    distillation,
    evaluation,
    export,
    factorization,
    keras3,
    models,
    pipeline,
    pruning,
    quantization,
    reporting,
)
from kcompress._keras import keras, tf
from kcompress.compression import Budget, BudgetError, CompressionResult, compress

__all__ = [
    "Budget", "BudgetError", "CompressionResult", "compress", "compression",
    "clustering", "data", "distillation", "evaluation", "export", "factorization", "keras", "keras3", "models", "pipeline",
    "pruning", "quantization", "reporting", "tf", "__version__",
]
