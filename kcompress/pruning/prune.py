"""``prune`` and ``strip``: wrap a copy of a model for magnitude pruning, and unwrap it."""

from __future__ import annotations

import numpy as np
import tensorflow_model_optimization as tfmot
from absl import logging

from kcompress import _tfmot
from kcompress._keras import all_layers, check_model, copy_model, keras
from kcompress.pruning.wrapper import DEPTHWISE_KERNELS, PruneLowMagnitude, is_pruning_wrapper
from kcompress.validation import resolve_layers

_TFMOT_SCHEDULE = tfmot.sparsity.keras.PruningSchedule


def _check_graph_model(model, argname="model"):
    model = check_model(model, argname)
    if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)):
        raise ValueError(
            f"{argname} is a subclassed model ({type(model).__name__}); kcompress can prune Sequential and "
            "Functional models (nested ones too). Rebuild it with the Functional API, or prune the "
            "Sequential/Functional sub-models it holds."
        )
    return model


def prunable_weight_names(layer) -> list[str]:
    """Names of the weights magnitude pruning would zero in ``layer`` (empty if none)."""
    if isinstance(layer, keras.Model):
        return []
    if isinstance(layer, tfmot.sparsity.keras.PrunableLayer):
        return [w.name for w in layer.get_prunable_weights()]
    if type(layer) in DEPTHWISE_KERNELS:
        return list(DEPTHWISE_KERNELS[type(layer)])
    if _tfmot.PruneRegistry.supports(layer):
        return list(_tfmot.PruneRegistry._weight_names(layer))  # noqa: SLF001 - TFMOT's registry table
    return []


def _selector(model, layers):
    """Returns a predicate choosing which layers to wrap, after validating ``layers``."""
    if layers is None:
        def choose(layer):
            if prunable_weight_names(layer):
                return True
            if layer.weights and not isinstance(layer, keras.Model) and not _tfmot.PruneRegistry.supports(layer):
                logging.warning("Layer %r (%s) has weights but no pruning support; it stays dense.",
                                layer.name, type(layer).__name__)
            return False
        return choose
    chosen, _ = resolve_layers(model, layers, accept=lambda layer: bool(prunable_weight_names(layer)), nested=True,
                               what="prunable layers (a custom layer can implement tfmot.sparsity.keras.PrunableLayer)")
    wanted = {layer.name for layer in chosen}

    def choose(layer):
        return layer.name in wanted

    return choose


def prune(model, schedule, layers=None, block_size=(1, 1), m_by_n=None):
    """Returns a copy of ``model`` whose prunable layers are wrapped for magnitude pruning.

    The model passed in is never changed: its layers are copied before wrapping.
    Train the result with ``callbacks=kcompress.pruning.callbacks()``, then
    ``strip`` it.

    Args:
        model: a Sequential or Functional tf_keras or Keras 3 model (nested models are pruned too).
        schedule: a ``ConstantSparsity`` / ``PolynomialDecay`` (kcompress's or TFMOT's).
        layers: None for every prunable layer (Conv, Dense, ...), or the layers to prune as a
            name, a layer class, a layer of the model or a list of them, nested sub-models'
            layers included (:func:`kcompress.validation.resolve_layers`); the others stay dense.
        block_size: ``(rows, cols)`` blocks pruned together (block sparsity), e.g. ``(1, 4)``.
        m_by_n: e.g. ``(2, 4)``: keep at most 2 nonzeros in every 4 consecutive weights
            along the input channels (structured sparsity; the schedule's target is ignored).

    Returns:
        A new model of the same structure with ``PruneLowMagnitude`` wrappers. Its ``fit``
        raises a ``ValueError`` before training when ``callbacks`` lacks
        ``kcompress.pruning.callbacks()`` (TFMOT's ``UpdatePruningStep``).

    Raises:
        TypeError: not a tf_keras model, or a bad ``schedule`` / ``layers`` item.
        ValueError: a subclassed model, an unknown or unprunable layer in ``layers``,
            bad ``block_size`` / ``m_by_n``, or a model already wrapped.

    Example:
        >>> pruned = prune(model, ConstantSparsity(0.8, begin_step=0))
        >>> pruned.compile(...); pruned.fit(x, y, callbacks=callbacks())
        >>> small = strip(pruned)
    """
    model = _check_graph_model(model)
    if not isinstance(schedule, _TFMOT_SCHEDULE):
        raise TypeError(
            f"schedule must be a pruning schedule (kcompress.pruning.ConstantSparsity or PolynomialDecay), "
            f"got {type(schedule).__name__}."
        )
    if any(is_pruning_wrapper(layer) for layer in all_layers(model)):
        raise ValueError("model already holds pruning wrappers; strip(model) first or keep training it as it is.")
    try:
        block = tuple(int(b) for b in block_size)
    except (TypeError, ValueError):
        block = ()
    if len(block) != 2 or min(block) < 1:
        raise ValueError(f"block_size must be two positive ints (rows, cols), got {block_size!r}.")
    if m_by_n is not None:
        try:
            m, n = (int(v) for v in m_by_n)
        except (TypeError, ValueError):
            m = n = 0
        if not 0 < m < n:
            raise ValueError(f"m_by_n must be (m, n) with 0 < m < n, e.g. (2, 4), got {m_by_n!r}.")
        if block != (1, 1):
            raise ValueError("m_by_n and block_size cannot be combined; pass one of them.")
        m_by_n = (m, n)
    copy = copy_model(model)
    choose = _selector(copy, layers)
    if block != (1, 1):
        _check_block(copy, choose, block)
    wrapped = []

    def wrap(layer):
        if isinstance(layer, keras.Model):
            return keras.models.clone_model(layer, clone_function=wrap)
        if not choose(layer):
            return layer
        wrapped.append(layer.name)
        return PruneLowMagnitude(layer, pruning_schedule=schedule, block_size=block, sparsity_m_by_n=m_by_n)

    result = keras.models.clone_model(copy, clone_function=wrap)
    separable = [f"{layer.name!r}" for layer in all_layers(copy) if layer.name in wrapped
                 and isinstance(layer, (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D))]
    if separable:
        logging.warning("Pruning the pointwise kernels of %s; their depthwise kernels stay dense (TFMOT prunes one "
                        "kernel per separable layer).", ", ".join(separable))
    if not wrapped:
        raise ValueError(f"model {model.name!r} has no prunable layer (Conv, Dense, ...); nothing to prune.")
    logging.info("Pruning %d layers of %s: %s", len(wrapped), model.name, ", ".join(wrapped))
    return _guard_fit(result)


def has_pruning_step_callback(callbacks) -> bool:
    """True when ``callbacks`` (a list, a CallbackList or None) holds TFMOT's ``UpdatePruningStep``."""
    if callbacks is None:
        return False
    items = getattr(callbacks, "callbacks", callbacks)
    if isinstance(items, keras.callbacks.Callback):
        items = [items]
    return any(isinstance(c, tfmot.sparsity.keras.UpdatePruningStep) for c in items)


def pruning_callbacks_error(model_name: str) -> ValueError:
    return ValueError(
        f"model {model_name!r} holds pruning wrappers, so fit needs callbacks=kcompress.pruning.callbacks() "
        "(TFMOT's UpdatePruningStep advances the pruning schedule; without it TFMOT fails inside the "
        "training graph). Add them: model.fit(..., callbacks=kc.pruning.callbacks() + your_callbacks)."
    )


def _guard_fit(model):
    """Makes ``model.fit`` refuse, before any work, to train without the pruning step callback.

    The check lives on this model object: a pruned model loaded from a file fails as TFMOT does.
    """
    fit = model.fit

    def checked_fit(*args, **kwargs):
        callbacks = kwargs.get("callbacks", args[5] if len(args) > 5 else None)
        if not has_pruning_step_callback(callbacks):
            raise pruning_callbacks_error(model.name)
        return fit(*args, **kwargs)

    checked_fit.__doc__ = fit.__doc__
    model.fit = checked_fit
    return model


def _check_block(model, choose, block):
    """Block sparsity needs 2-D kernels (TFMOT pools blocks over a matrix): names the layers that have others."""
    chosen = [layer for layer in all_layers(model) if not isinstance(layer, keras.Model) and choose(layer)]
    bad = [f"{layer.name!r} ({type(layer).__name__}, {len(w.shape)}-D {w.name.split('/')[-1].split(':')[0]})"
           for layer in chosen for w in _prunable_weights(layer) if len(w.shape) != 2]
    if bad:
        dense = [layer.name for layer in chosen if all(len(w.shape) == 2 for w in _prunable_weights(layer))]
        raise ValueError(
            f"block_size={block} prunes blocks of 2-D kernels (Dense), but layer(s) {', '.join(bad)} cannot be "
            f"block-pruned. Prune only the Dense layers in blocks (layers={dense!r}), or use block_size=(1, 1) "
            "or m_by_n for the convolutions."
        )


def strip(model):
    """Returns a plain copy of a pruned model: wrappers removed, zeros kept.

    Args:
        model: a model from :func:`prune` (or TFMOT), possibly trained.

    Returns:
        A new tf_keras model of the original structure; the input is unchanged. Keras 3: ``kcompress.keras3.to_keras3(strip(pruned))``.
    """
    model = _check_graph_model(model)

    def unwrap(layer):
        if isinstance(layer, keras.Model):
            return keras.models.clone_model(layer, clone_function=unwrap)
        if is_pruning_wrapper(layer):
            inner = layer.layer.__class__.from_config(layer.layer.get_config())
            masks = {id(w): m for w, m, _ in layer.pruning_vars}
            inner.build(layer.input_shape)
            values = []
            for w in layer.layer.weights:
                v = w.numpy()
                if id(w) in masks:
                    v = v * masks[id(w)].numpy()
                values.append(v)
            inner.set_weights(values)
            return inner
        return layer.__class__.from_config(layer.get_config())

    stripped = keras.models.clone_model(model, clone_function=unwrap)
    _copy_plain_weights(model, stripped)
    return stripped


def _copy_plain_weights(src, dst):
    """Copies weights of non-wrapper layers (wrappers were handled while unwrapping)."""
    for a, b in zip(src.layers, dst.layers, strict=True):
        if isinstance(a, keras.Model):
            _copy_plain_weights(a, b)
        elif not is_pruning_wrapper(a) and a.weights:
            b.set_weights(a.get_weights())


def is_pruned(model) -> bool:
    """True when ``model`` holds pruning wrappers."""
    model = check_model(model)
    return any(is_pruning_wrapper(layer) for layer in all_layers(model))


def prunable_kernels(model) -> list[tuple[str, np.ndarray]]:
    """(layer name, kernel values) of every prunable weight, wrapped or stripped, masks applied."""
    out = []
    for layer in all_layers(model):
        if is_pruning_wrapper(layer):
            for w, m, _ in layer.pruning_vars:
                out.append((layer.layer.name, w.numpy() * m.numpy()))
        elif not isinstance(layer, keras.Model):
            # A quantization-aware model holds its layers inside QuantizeWrappers.
            if _is_quantize_wrapper(layer):
                # Inside the wrapper, layer.kernel is the fake-quantized tensor; read the variables by name.
                inner = layer.layer
                names = {w.split("/")[-1].split(":")[0] for w in prunable_weight_names(inner)}
                weights = [w for w in layer.weights if w.name.split("/")[-1].split(":")[0] in names]
            else:
                inner, weights = layer, _prunable_weights(layer)
            for w in weights:
                out.append((inner.name, w.numpy()))
    return out


def _is_quantize_wrapper(layer) -> bool:
    return type(layer).__name__.startswith("QuantizeWrapper") and isinstance(getattr(layer, "layer", None),
                                                                              keras.layers.Layer)


def _prunable_weights(layer) -> list:
    if isinstance(layer, tfmot.sparsity.keras.PrunableLayer):
        return list(layer.get_prunable_weights())
    if type(layer) in DEPTHWISE_KERNELS:
        return [getattr(layer, name) for name in DEPTHWISE_KERNELS[type(layer)]]
    if _tfmot.PruneRegistry.supports(layer):
        return [getattr(layer, name) for name in _tfmot.PruneRegistry._weight_names(layer)]  # noqa: SLF001
    return []
