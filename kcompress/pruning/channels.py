"""Channel (filter / unit) pruning that really shrinks a model.

Whole Conv2D filters or Dense units with the smallest norm are removed; the
layers their outputs flow through (BatchNormalization, activations, pooling,
Dropout, Flatten, global pooling) and the next Conv2D/Dense layer's inputs are
cut to match. The result is a smaller plain Keras model, ready to fine-tune.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from absl import logging

from kcompress._keras import keras
from kcompress.pruning.prune import _check_graph_model
from kcompress.pruning.wrapper import is_pruning_wrapper

L = keras.layers
# Layers a channel passes through unchanged (one channel in, the same channel out).
_PASS_THROUGH = (
    L.BatchNormalization, L.Activation, L.ReLU, L.LeakyReLU, L.ELU, L.PReLU, L.Softmax,
    L.MaxPooling2D, L.AveragePooling2D, L.Dropout, L.SpatialDropout2D, L.ZeroPadding2D,
    L.Cropping2D, L.GaussianNoise, L.GaussianDropout,
)
_FLATTENING = (L.Flatten, L.GlobalAveragePooling2D, L.GlobalMaxPooling2D)
CRITERIA = ("l1", "l2")


@dataclasses.dataclass
class _Plan:
    layer: str          # the Conv2D / Dense whose outputs are removed
    keep: np.ndarray    # indices of the kept filters / units, ascending
    through: list       # pass-through layers on the way (names)
    consumer: str       # the next Conv2D / Dense
    spatial: tuple | None  # (H, W) before a Flatten, else None


def _consumers(model) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {layer.name: [] for layer in model.layers}
    if isinstance(model, keras.Sequential):
        names = [layer.name for layer in model.layers]
        for a, b in zip(names, names[1:], strict=False):
            out[a].append(b)
        return out
    for entry in model.get_config()["layers"]:
        for node in entry.get("inbound_nodes", []):
            for inbound in node:
                out.setdefault(inbound[0], []).append(entry["name"])
    return out


def _output_names(model) -> set[str]:
    if isinstance(model, keras.Sequential):
        return {model.layers[-1].name}
    return {x[0] for x in model.get_config()["output_layers"]}


def _prunable_kind(layer) -> bool:
    if isinstance(layer, (L.DepthwiseConv2D, L.SeparableConv2D, L.Conv2DTranspose)):
        return False
    if isinstance(layer, L.Conv2D):
        return getattr(layer, "groups", 1) == 1 and layer.data_format == "channels_last"
    return isinstance(layer, L.Dense) and len(layer.input_shape) == 2


def _plan(model, name, consumers, outputs, keep) -> _Plan | str:
    """Follows ``name``'s output to the next Conv2D/Dense; returns a plan or why it can't."""
    cur, through, spatial = name, [], None
    while True:
        if cur in outputs:
            return f"its output reaches the model output through {cur!r}"
        nxt = consumers.get(cur, [])
        if len(nxt) != 1:
            return f"{cur!r} feeds {len(nxt)} layers (branches and merges are not followed)"
        layer = model.get_layer(nxt[0])
        if _prunable_kind(layer):
            return _Plan(name, keep, through, layer.name, spatial)
        if isinstance(layer, _PASS_THROUGH):
            if isinstance(layer, L.BatchNormalization) and layer.axis not in ([-1], [3], -1, 3, [1]):
                return f"BatchNormalization {layer.name!r} normalises axis {layer.axis}"
            if isinstance(layer, L.PReLU) and layer.shared_axes is None:
                return f"PReLU {layer.name!r} has per-position weights"
        elif isinstance(layer, _FLATTENING):
            if isinstance(layer, L.Flatten):
                shape = layer.input_shape
                if len(shape) != 4:
                    return f"Flatten {layer.name!r} sees shape {shape}"
                spatial = (int(shape[1]), int(shape[2]))
        else:
            return f"it flows into {type(layer).__name__} {layer.name!r}, which kcompress cannot cut"
        through.append(layer.name)
        cur = layer.name


def _scores(layer, criterion) -> np.ndarray:
    kernel = layer.kernel.numpy()
    flat = kernel.reshape(-1, kernel.shape[-1])
    return np.abs(flat).sum(0) if criterion == "l1" else np.sqrt((flat**2).sum(0))


def prune_channels(model, ratio: float, criterion: str = "l1", layers=None):
    """Removes the ``ratio`` of filters / units with the smallest norm from each eligible layer.

    A Conv2D or Dense layer is eligible when its output reaches exactly one next
    Conv2D or Dense layer through pass-through layers only (BatchNormalization,
    activations, pooling, Dropout, Flatten, global pooling); the model's output
    layer keeps its units. The model passed in is not changed.

    Args:
        model: a Sequential or Functional tf_keras model (not pruning-wrapped, not nested).
        ratio: fraction of filters/units to remove, in (0, 1); at least one is kept.
            A dict ``{layer_name: ratio}`` cuts only those layers, each by its own ratio.
        criterion: ``"l1"`` or ``"l2"`` norm of each filter's weights.
        layers: optional names of the layers to cut (default: every eligible layer).

    Returns:
        A new, smaller, uncompiled tf_keras model with the kept weights copied.

    Raises:
        ValueError: ratio outside (0, 1), unknown criterion, a named layer that is
            missing or cannot be cut, nothing eligible, or a wrapped/nested model.

    Example:
        >>> slim = prune_channels(model, ratio=0.5)
        >>> kcompress.evaluation.keras_macs(slim) / kcompress.evaluation.keras_macs(model)
        0.32
    """
    _check_graph_model(model)
    ratios = dict(ratio) if isinstance(ratio, dict) else None
    for key, value in (ratios or {"ratio": ratio}).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
            where = "ratio" if ratios is None else f"ratio[{key!r}]"
            raise ValueError(f"{where} must be a number in (0, 1), got {value!r}.")
    if ratios is not None:
        if layers is not None:
            raise ValueError("pass per-layer ratios as ratio={name: ratio} or layers=[...] with one ratio, not both.")
        layers = list(ratios)
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {list(CRITERIA)}, got {criterion!r}.")
    if any(is_pruning_wrapper(layer) for layer in model.layers):
        raise ValueError("model holds pruning wrappers; strip() it before prune_channels.")
    if any(isinstance(layer, keras.Model) for layer in model.layers):
        raise ValueError("prune_channels does not cut through nested models; flatten the model into one Functional graph.")
    consumers, outputs = _consumers(model), _output_names(model)
    names = [layer.name for layer in model.layers]
    if layers is not None:
        layers = [layers] if isinstance(layers, str) else list(layers)
        for item in layers:
            if item not in names:
                raise ValueError(f"layers names {item!r}, which is not in the model; its layers are {names}.")
    plans: dict[str, _Plan] = {}
    for layer in model.layers:
        if layers is not None and layer.name not in layers:
            continue
        if not _prunable_kind(layer):
            if layers is not None:
                raise ValueError(f"layers names {layer.name!r}, a {type(layer).__name__}; only Conv2D and Dense filters/units can be removed.")
            continue
        n = layer.kernel.shape[-1]
        layer_ratio = ratios[layer.name] if ratios is not None else ratio
        n_keep = max(1, int(round(n * (1.0 - layer_ratio))))
        keep = np.sort(np.argsort(-_scores(layer, criterion), kind="stable")[:n_keep])
        plan = _plan(model, layer.name, consumers, outputs, keep)
        if isinstance(plan, str):
            if layers is not None:
                raise ValueError(f"layer {layer.name!r} cannot be channel-pruned: {plan}.")
            logging.info("Keeping all of %s: %s", layer.name, plan)
            continue
        plans[layer.name] = plan
    if not plans:
        raise ValueError(f"model {model.name!r} has no layer whose filters/units can be removed.")

    config = model.get_config()
    for entry in config["layers"]:
        name = entry["config"]["name"]
        if name in plans:
            key = "filters" if "filters" in entry["config"] else "units"
            entry["config"][key] = int(len(plans[name].keep))
    slim = model.__class__.from_config(config)

    by_consumer = {p.consumer: p for p in plans.values()}
    by_through = {t: p for p in plans.values() for t in p.through}
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if layer.name in plans:
            keep = plans[layer.name].keep
            weights[0] = weights[0][..., keep]
            if len(weights) > 1:
                weights[1] = weights[1][keep]
        if layer.name in by_consumer:
            p = by_consumer[layer.name]
            if isinstance(layer, L.Conv2D):
                weights[0] = weights[0][:, :, p.keep, :]
            elif p.spatial is not None:
                h, w = p.spatial
                channels = model.get_layer(p.layer).kernel.shape[-1]
                rows = ((np.arange(h * w)[:, None] * channels) + p.keep[None, :]).reshape(-1)
                weights[0] = weights[0][rows]
            else:
                weights[0] = weights[0][p.keep]
        if layer.name in by_through:
            keep = by_through[layer.name].keep
            weights = [w[keep] if w.ndim >= 1 and w.shape[-1] == model.get_layer(by_through[layer.name].layer).kernel.shape[-1] else w
                       for w in weights]
        slim.get_layer(layer.name).set_weights(weights)
    logging.info("Channel pruning of %s: %s", model.name,
                 ", ".join(f"{n} {model.get_layer(n).kernel.shape[-1]}->{len(p.keep)}" for n, p in plans.items()))
    return slim
