"""The pruning wrapper: TFMOT's ``PruneLowMagnitude`` with a config that keeps everything.

TFMOT's wrapper drops ``sparsity_m_by_n`` from its config, and loading a pruned
model needs ``prune_scope()``. This subclass saves every argument and is
registered with Keras (as is TFMOT's own class), so pruned models reload with a
plain ``keras.models.load_model``.
"""

from __future__ import annotations

import tensorflow_model_optimization as tfmot

from kcompress import _tfmot
from kcompress._keras import keras
from kcompress.pruning import schedules as _schedules

_TFMOT_WRAPPER = _tfmot.PruneLowMagnitude

# Kernels TFMOT's registry leaves dense (it prunes no DepthwiseConv weight), which kcompress prunes.
# A SeparableConv keeps TFMOT's choice, its pointwise kernel only: the wrapper names every mask
# "mask", and an .h5 file cannot hold two weights of one layer under the same name.
DEPTHWISE_KERNELS = {
    keras.layers.DepthwiseConv2D: ("depthwise_kernel",),
    keras.layers.DepthwiseConv1D: ("depthwise_kernel",),
}


def _make_prunable(layer):
    """Gives a depthwise / separable layer a ``get_prunable_weights`` listing its kernels (TFMOT's hook)."""
    attrs = DEPTHWISE_KERNELS.get(type(layer))
    if attrs and not hasattr(layer, "get_prunable_weights"):
        layer.get_prunable_weights = lambda: [getattr(layer, a) for a in attrs]
    return layer


@keras.utils.register_keras_serializable(package="kcompress")
class PruneLowMagnitude(_TFMOT_WRAPPER):
    """Magnitude pruning wrapper around one layer (see ``kcompress.pruning.prune``).

    Unlike TFMOT's, it prunes DepthwiseConv1D / 2D kernels, and an error while it builds names
    the layer. (A SeparableConv's pointwise kernel is pruned, its small depthwise kernel is not.)
    """

    def __init__(self, layer, *args, **kwargs):
        super().__init__(_make_prunable(layer), *args, **kwargs)

    def build(self, input_shape):
        try:
            super().build(input_shape)
        except ValueError as err:
            raise ValueError(f"cannot prune layer {self.layer.name!r} ({type(self.layer).__name__}): {err}") from err

    def get_config(self):
        config = super().get_config()
        schedule = self.pruning_schedule
        if isinstance(schedule, _schedules._Schedule):  # noqa: SLF001
            config["pruning_schedule"] = {
                "class_name": keras.utils.get_registered_name(type(schedule)),
                "config": schedule.get_config(),
            }
        else:  # a TFMOT schedule nests its own class name
            config["pruning_schedule"] = schedule.get_config()
        config["sparsity_m_by_n"] = list(self.sparsity_m_by_n) if self.sparsity_m_by_n else None
        config["block_size"] = list(self.block_size)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        schedule = config.pop("pruning_schedule")
        layer = keras.layers.deserialize(config.pop("layer"))
        schedule = keras.utils.deserialize_keras_object(
            schedule,
            custom_objects={
                "kcompress>ConstantSparsity": _schedules.ConstantSparsity,
                "kcompress>PolynomialDecay": _schedules.PolynomialDecay,
                "ConstantSparsity": tfmot.sparsity.keras.ConstantSparsity,
                "PolynomialDecay": tfmot.sparsity.keras.PolynomialDecay,
            },
        )
        m_by_n = config.pop("sparsity_m_by_n", None)
        return cls(layer=layer, pruning_schedule=schedule, sparsity_m_by_n=tuple(m_by_n) if m_by_n else None, **config)


def is_pruning_wrapper(layer) -> bool:
    """True for kcompress's and TFMOT's pruning wrappers."""
    return isinstance(layer, _TFMOT_WRAPPER)


# Models pruned with raw TFMOT load without prune_scope() too.
keras.utils.get_custom_objects().setdefault("PruneLowMagnitude", _TFMOT_WRAPPER)
