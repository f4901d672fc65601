"""Keras 3 models in, Keras 3 models out.

kcompress compresses with tf_keras (Keras 2) and TFMOT. ``from_keras3`` rebuilds a
Keras 3 Sequential / Functional model as an equal tf_keras model, and every
kcompress entry point does so by itself when handed a Keras 3 model;
``to_keras3`` rebuilds a plain (stripped) tf_keras model as Keras 3, ready for
``model.save("m.keras")`` and plain ``keras.saving.load_model``.

Example:
    >>> import kcompress as kc
    >>> pruned = kc.pruning.prune(keras3_model, kc.pruning.ConstantSparsity(0.8, begin_step=0))
    >>> ...  # compile, fit with kc.pruning.callbacks()
    >>> back = kc.keras3.to_keras3(kc.pruning.strip(pruned))
"""

from kcompress.keras3.convert import from_keras3, to_keras3
from kcompress.keras3.layers import SUPPORTED_ACTIVATIONS, SUPPORTED_LAYERS

__all__ = ["from_keras3", "to_keras3", "SUPPORTED_LAYERS", "SUPPORTED_ACTIVATIONS"]
