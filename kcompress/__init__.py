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

from kcompress import _keras  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
from kcompress import data, distillation, evaluation, export, models, pruning, quantization, reporting  # noqa: E402
from kcompress._keras import keras  # noqa: E402

__all__ = [
    "data", "distillation", "evaluation", "export", "keras", "models", "pruning", "quantization", "reporting",
    "__version__",
]
