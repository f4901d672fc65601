"""The one adapter for TFMOT internals: every private ``tensorflow_model_optimization`` import.

TFMOT's public API (``tfmot.sparsity.keras``, ``tfmot.quantization.keras``,
``tfmot.clustering.keras``) offers functions, schedules and a few base classes, but not the
wrapper classes, registries and quantize configs kcompress must subclass or query. Those live
under TFMOT's private ``python.core`` tree, which may move in any release; importing them only
here means a TFMOT upgrade touches this one file. Each name below says why kcompress needs it.
Names TFMOT does export publicly (``PrunableLayer``, ``QuantizeWrapperV2``, ``ClusterableLayer``)
are taken from the public API where they are used, not from here.
"""

from __future__ import annotations

# Imported through kcompress/__init__.py, which loads the Keras shim (TF_USE_LEGACY_KERAS) first.
from tensorflow_model_optimization.python.core.clustering.keras import (
    cluster_wrapper as _cluster_wrapper,
)
from tensorflow_model_optimization.python.core.clustering.keras import (
    clustering_registry as _clustering_registry,
)
from tensorflow_model_optimization.python.core.quantization.keras import (
    quantize_layer as _quantize_layer,
)
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
    prune_preserve_quantize_registry as _prune_preserve,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_configs as _default_8bit_configs,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_registry as _default_8bit_registry,
)
from tensorflow_model_optimization.python.core.sparsity.keras import (
    prune_registry as _prune_registry,
)
from tensorflow_model_optimization.python.core.sparsity.keras import (
    pruning_wrapper as _pruning_wrapper,
)

# --- clustering (kcompress.clustering.cluster) ---
# The wrapper cluster_weights puts around each layer: is_clustered recognises a clustered
# model by it (TFMOT exports no predicate and no class).
ClusterWeights = _cluster_wrapper.ClusterWeights
# TFMOT's table of which built-in layers and weights it clusters: kcompress asks it which layers
# to cluster before wrapping, so unsupported layers get a clear message instead of TFMOT's error.
ClusteringRegistry = _clustering_registry.ClusteringRegistry

# --- pruning (kcompress.pruning.prune, kcompress.pruning.wrapper) ---
# TFMOT's table of prunable built-in layers and their kernels: prunable_weight_names, the
# sparsity report and the layer selector read it, so kcompress prunes exactly what TFMOT would.
PruneRegistry = _prune_registry.PruneRegistry
# TFMOT's pruning wrapper: kcompress subclasses it so get_config keeps every argument
# (sparsity_m_by_n is dropped by TFMOT's) and pruned models reload without prune_scope().
PruneLowMagnitude = _pruning_wrapper.PruneLowMagnitude

# --- quantization (kcompress.quantization.qat) ---
# The input quantizer layer quantize_apply inserts: subclassed so it loads from .keras (TFMOT's
# build does not mark it built); QAT models are switched to that subclass after quantize_apply.
QuantizeLayer = _quantize_layer.QuantizeLayer
# The prune-preserving scheme's weight quantizers and registry: subclassed so the sparsity mask is
# taken from the weights at every step (TFMOT keeps a build-time constant a saved model lacks)
# and DepthwiseConv2D kernels are protected too.
PrunePreserveDefault8BitWeightsQuantizer = _prune_preserve.PrunePreserveDefault8BitWeightsQuantizer
PrunePreserveDefault8BitConvWeightsQuantizer = _prune_preserve.PrunePreserveDefault8BitConvWeightsQuantizer
PrunePreserveDefaultWeightsQuantizer = _prune_preserve.PrunePreserveDefaultWeightsQuantizer
Default8bitPrunePreserveQuantizeRegistry = _prune_preserve.Default8bitPrunePreserveQuantizeRegistry
# The default 8-bit scheme's quantize configs: the prune-preserving configs subclass the Dense and
# Conv ones (so they save as themselves), and kcompress recognises TFMOT's NoOp config, which
# leaves a kernel before a separate ReLU in float and unmasked, to replace it.
NoOpQuantizeConfig = _default_8bit_configs.NoOpQuantizeConfig
Default8BitQuantizeConfig = _default_8bit_registry.Default8BitQuantizeConfig
Default8BitConvQuantizeConfig = _default_8bit_registry.Default8BitConvQuantizeConfig

__all__ = [
    "ClusterWeights", "ClusteringRegistry", "PruneRegistry", "PruneLowMagnitude", "QuantizeLayer",
    "PrunePreserveDefault8BitWeightsQuantizer", "PrunePreserveDefault8BitConvWeightsQuantizer",
    "PrunePreserveDefaultWeightsQuantizer", "Default8bitPrunePreserveQuantizeRegistry",
    "NoOpQuantizeConfig", "Default8BitQuantizeConfig", "Default8BitConvQuantizeConfig",
]
