"""``cluster`` and ``strip``: TFMOT weight clustering (weight sharing) with a kcompress API."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow_model_optimization as tfmot
from absl import logging

from kcompress import _tfmot
from kcompress._keras import check_model, copy_model, keras
from kcompress.pruning.report import PRUNED_FRACTION
from kcompress.validation import resolve_layers

_TFMOT = tfmot.clustering.keras
INITS = {
    "kmeans_plus_plus": _TFMOT.CentroidInitialization.KMEANS_PLUS_PLUS,
    "linear": _TFMOT.CentroidInitialization.LINEAR,
    "density_based": _TFMOT.CentroidInitialization.DENSITY_BASED,
    "random": _TFMOT.CentroidInitialization.RANDOM,
}
MAX_CLUSTERS = 256


def is_clustered(model) -> bool:
    """True when ``model`` (or a nested model) holds TFMOT clustering wrappers."""
    for layer in model.layers:
        if isinstance(layer, _tfmot.ClusterWeights):
            return True
        if isinstance(layer, keras.Model) and is_clustered(layer):
            return True
    return False


def _clusterable(layer) -> bool:
    """A layer with weights that TFMOT clusters (Dense, Conv, ... or a ClusterableLayer)."""
    if isinstance(layer, keras.Model) or not layer.weights:
        return False
    if isinstance(layer, _TFMOT.ClusterableLayer):
        return True
    registry = _tfmot.ClusteringRegistry
    return bool(registry.supports(layer) and registry._weight_names(layer))  # noqa: SLF001 - TFMOT's table


def _check_clusters(value, where="clusters"):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where} must be an int in [2, {MAX_CLUSTERS}], got {value!r}.")
    if not 2 <= value <= MAX_CLUSTERS:
        raise ValueError(f"{where} must be in [2, {MAX_CLUSTERS}] (8-bit cluster indices), got {value!r}.")
    return int(value)


def _zero_fraction(model, names) -> float:
    zeros = total = 0
    for layer in model.layers:
        if layer.name in names:
            kernel = getattr(layer, "kernel", None)
            if kernel is not None:
                values = kernel.numpy()
                zeros += int(np.sum(values == 0))
                total += values.size
    return zeros / total if total else 0.0


def cluster(model, clusters=16, preserve_sparsity=None, layers=None, init: str = "kmeans_plus_plus"):
    """Returns a copy of ``model`` whose layers share ``clusters`` weight values each (TFMOT clustering).

    Each chosen layer's kernel is tied to ``clusters`` centroids (TFMOT's
    ``cluster_weights``); fine-tune the result to train the centroids, then
    :func:`strip` it into a plain model whose kernels hold at most ``clusters``
    distinct values (plus zero with ``preserve_sparsity``). The input model is
    never changed.

    Args:
        model: a Sequential or Functional tf_keras or Keras 3 model (pruned and stripped, or dense).
        clusters: centroids per layer, an int in [2, 256] or a dict
            ``{layer_name: int}`` naming the layers to cluster.
        preserve_sparsity: keep zero weights at zero (for pruned models). None:
            True when at least 10% of the chosen kernels are zeros.
        layers: the layers to cluster: a name, a layer class (every clusterable layer of that
            type) or a list of them; None for every clusterable layer (Dense, Conv, ...).
            Not with a ``clusters`` dict.
        init: centroid initialization, one of :data:`INITS`.

    Returns:
        A new model with TFMOT ``ClusterWeights`` wrappers (compile and fit it).

    Raises:
        TypeError: not a tf_keras model, or a non-int cluster count.
        ValueError: clusters outside [2, 256], unknown ``init``, an unknown or
            unclusterable layer, or a model already clustered.

    Example:
        >>> clustered = cluster(pruned_and_stripped, clusters=32)
        >>> kc.models.compile_classifier(clustered, 1e-4); kc.models.fit(clustered, ds, epochs=3)
        >>> shared = strip(clustered)
    """
    model = check_model(model)
    if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)):
        raise ValueError(f"model is a subclassed model ({type(model).__name__}); cluster needs a Sequential or Functional model.")
    if is_clustered(model):
        raise ValueError("model already holds clustering wrappers; strip(model) first or keep training it as it is.")
    if init not in INITS:
        raise ValueError(f"init must be one of {sorted(INITS)}, got {init!r}.")
    if preserve_sparsity is not None and not isinstance(preserve_sparsity, bool):
        raise TypeError(f"preserve_sparsity must be None, True or False, got {preserve_sparsity!r}.")
    if isinstance(clusters, Mapping):
        if layers is not None:
            raise ValueError("Pass layers or a clusters dict naming the layers, not both.")
        per_layer = {name: _check_clusters(k, f"clusters[{name!r}]") for name, k in clusters.items()}
        layers = list(per_layer)
    else:
        default = _check_clusters(clusters)
        per_layer = None
    chosen, _ = resolve_layers(model, layers, accept=_clusterable,
                               what="layers TFMOT can cluster")
    names = [layer.name for layer in chosen]
    if not names:
        raise ValueError(f"model {model.name!r} has no clusterable layer.")
    per_layer = per_layer or {name: default for name in names}
    if preserve_sparsity is None:
        preserve_sparsity = _zero_fraction(model, set(names)) >= PRUNED_FRACTION
    copy = copy_model(model)

    def wrap(layer):
        if layer.name not in per_layer:
            return layer
        return _TFMOT.cluster_weights(layer, number_of_clusters=per_layer[layer.name],
                                      cluster_centroids_init=INITS[init], preserve_sparsity=preserve_sparsity)

    result = keras.models.clone_model(copy, clone_function=wrap)
    logging.info("Clustering %s: %s (preserve_sparsity=%s)", model.name, per_layer, preserve_sparsity)
    return result


def strip(model):
    """Returns a plain copy of a clustered model: wrappers removed, shared values kept.

    Args:
        model: a model from :func:`cluster` (trained or not).

    Returns:
        A new tf_keras model of the original structure; the input is unchanged.

    Example:
        >>> shared = strip(clustered); len(np.unique(shared.get_layer("fc1").kernel.numpy()))
    """
    model = check_model(model)
    if not is_clustered(model):
        raise ValueError("model holds no clustering wrappers; strip() takes a model from cluster().")
    # strip_clustering reuses the unwrapped layers' objects; copy so the result shares nothing.
    return copy_model(_TFMOT.strip_clustering(model))
