"""Quantization-aware training (QAT) with TFMOT, including its sparsity-preserving scheme."""

from __future__ import annotations

import warnings

import numpy as np
import tensorflow_model_optimization as tfmot
from absl import logging

from kcompress import _tfmot
from kcompress._keras import check_model, copy_model, keras, leaf_layers, tf
from kcompress.pruning.report import PRUNED_FRACTION
from kcompress.validation import check_bool, resolve_layers

_qk = tfmot.quantization.keras
_default_8bit = _qk.default_8bit
_prune_preserve = tfmot.experimental.combine

# At or above this fraction of zero kernel weights QAT preserves sparsity by default: the one
# "was pruned" rule of kcompress (kcompress.pruning.PRUNED_FRACTION, which clustering uses too).
SPARSE_THRESHOLD = PRUNED_FRACTION
# Layers whose kernels the prune-preserving scheme keeps at zero (a SeparableConv2D becomes a
# DepthwiseConv2D and a 1x1 Conv2D in QAT, so both of its kernels are kept too).
_KERNELS = {
    "Conv2D": ("kernel",), "Dense": ("kernel",), "DepthwiseConv2D": ("depthwise_kernel",),
    "SeparableConv2D": ("depthwise_kernel", "pointwise_kernel"),
}


class _LeaveFloat(_qk.QuantizeConfig):
    """Placeholder config for a layer QAT cannot handle, so one pass can find all of them."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


class _CollectingRegistry(_qk.QuantizeRegistry):
    """Wraps a scheme's registry; records the annotated layers it does not support instead of failing.

    TFMOT stops at the first unsupported layer with a ``RuntimeError``; recording them lets
    :func:`quantize_aware` name every one of them in a single error.
    """

    def __init__(self, inner, annotated: set[str], check_default: bool):
        self._inner = inner
        self._default = _default_8bit.Default8BitQuantizeScheme().get_quantize_registry()
        self._annotated = annotated
        self._check_default = check_default
        self.unsupported: list = []

    def _supported(self, layer) -> bool:
        if not self._inner.supports(layer):
            return False
        # The prune-preserving registry calls every weightless layer supported, then asks the
        # default registry for its config, which fails for layers that registry does not know.
        return not self._check_default or self._default.supports(layer)

    def supports(self, layer):
        if self._supported(layer):
            return True
        if layer.name in self._annotated:
            if all(layer is not seen for seen in self.unsupported):
                self.unsupported.append(layer)
            return True
        return False

    def get_quantize_config(self, layer):
        if any(layer is seen for seen in self.unsupported):
            return _LeaveFloat()
        return self._inner.get_quantize_config(layer)


class _CollectingScheme(_qk.QuantizeScheme):
    def __init__(self, inner, annotated: set[str], check_default: bool):
        self._inner = inner
        self.registry = _CollectingRegistry(inner.get_quantize_registry(), annotated, check_default)

    def get_layout_transformer(self):
        return self._inner.get_layout_transformer()

    def get_quantize_registry(self):
        return self.registry


@keras.utils.register_keras_serializable(package="kcompress")
class QuantizeLayer(_tfmot.QuantizeLayer):
    """TFMOT's input ``QuantizeLayer``, which also loads from the ``.keras`` format.

    TFMOT's ``build`` does not mark the layer built, so the ``.keras`` loader, which builds each
    layer from its saved input shape and then calls it, built it twice and found 5 variables for
    the 3 saved ("expected 5 variables, but received 3").
    """

    def build(self, input_shape):
        super().build(input_shape)
        self.built = True


def _own_variables(layer) -> list:
    """The wrapper's variables that its wrapped layer does not save itself, each once."""
    inner = layer.layer
    seen = {id(v) for v in inner._trainable_weights + inner._non_trainable_weights}  # noqa: SLF001
    out = []
    for v in layer._trainable_weights + layer._non_trainable_weights:  # noqa: SLF001 - what Keras saves
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


@keras.utils.register_keras_serializable(package="kcompress")
class QuantizeWrapperV2(tfmot.quantization.keras.QuantizeWrapperV2):
    """TFMOT's ``QuantizeWrapperV2``, which also loads from the ``.keras`` format.

    After ``quantize_apply`` and training, the wrapper's own variables list the wrapped layer's
    kernel twice and, for some layers (BatchNormalization), variables the wrapped layer saves
    itself, so a ``.keras`` file held more variables than a reloaded wrapper has ("expected 4
    variables, but received 5"). Here the wrapper saves and loads each variable the wrapped layer
    does not, once.
    """

    def save_own_variables(self, store):
        for i, v in enumerate(_own_variables(self)):
            store[f"{i}"] = v.numpy()

    def load_own_variables(self, store):
        self._update_trackables()
        variables = _own_variables(self)
        if len(store.keys()) != len(variables):
            raise ValueError(
                f"Layer {self.name!r} expected {len(variables)} variables, but the file holds {len(store.keys())}; "
                "it was saved by another version of the model."
            )
        for i, v in enumerate(variables):
            v.assign(store[f"{i}"])


def _loadable(qat):
    """Makes the QuantizeLayers and QuantizeWrapperV2s of a fresh QAT model kcompress's.

    Same state, save/load fixes only. quantize_apply builds TFMOT's classes itself; switching the
    class of those instances is the only way to save them as kcompress's without cloning the model.
    """
    for layer in qat.submodules:
        if type(layer) is _tfmot.QuantizeLayer:
            layer.__class__ = QuantizeLayer
        elif type(layer) is tfmot.quantization.keras.QuantizeWrapperV2:
            layer.__class__ = QuantizeWrapperV2
    return qat


def _register_tfmot_objects():
    """Registers TFMOT's quantization classes with Keras, so QAT models load without a scope.

    (As kcompress.pruning does for TFMOT's pruning wrapper.) Names already registered are kept.
    """
    registered = keras.utils.get_custom_objects()
    for objects in _qk.quantize_scope().custom_objects:
        for name, obj in objects.items():
            registered.setdefault(name, obj)


_register_tfmot_objects()


def quantize_scope(*custom_objects: dict):
    """A scope in which Keras can load quantization-aware models (TFMOT's ``quantize_scope``).

    Models from :func:`quantize_aware` save and load in ``.keras``, ``.h5`` and SavedModel with
    or without it once kcompress is imported (it registers TFMOT's quantization classes); the
    scope is for your own layers and for QAT models built with TFMOT directly.

    Args:
        *custom_objects: dicts ``{name: class}`` of your own layers or objects.

    Example:
        >>> qat.save("qat.keras")
        >>> with kc.quantization.quantize_scope({"MyLayer": MyLayer}):
        ...     qat = kc.keras.models.load_model("qat.keras")
    """
    for i, objects in enumerate(custom_objects):
        if not isinstance(objects, dict):
            raise TypeError(f"custom_objects[{i}] must be a dict {{name: class}}, got {type(objects).__name__}.")
    return _qk.quantize_scope(*custom_objects)


def _masked(inputs):
    # The weight times its own nonzero mask: the same forward pass, but a zero gradient for the
    # zeros, so they stay zero. TFMOT's quantizer keeps the mask as a constant taken at build time,
    # which a saved model does not carry: a reloaded model would build it from fresh random
    # weights. Taking it from the weights at every step needs no state and gives the same mask.
    return tf.stop_gradient(tf.cast(tf.not_equal(inputs, 0), inputs.dtype))


@keras.utils.register_keras_serializable(package="kcompress")
class SparsityPreservingWeightsQuantizer(_tfmot.PrunePreserveDefault8BitWeightsQuantizer):
    """TFMOT's prune-preserving 8-bit weight quantizer (per-tensor), with a mask that survives saving.

    Args:
        **config: the ``num_bits`` / ``per_axis`` / ``symmetric`` / ``narrow_range`` a saved
            config holds; they must equal the fixed 8-bit values.
    """

    def __init__(self, **config):
        super().__init__()
        _check_fixed_config(self, config)

    # Not converted by AutoGraph: nothing here branches on a tensor, and AutoGraph's rewrite of the
    # zero-argument super() once called this class's __init__ in place of the parent's __call__
    # ("tf____init__() takes 1 positional argument but 3 were given", the second QAT of a long
    # study process on Fashion-MNIST; not reproduced in a short one).
    @tf.autograph.experimental.do_not_convert
    def __call__(self, inputs, training, weights, **kwargs):
        return super().__call__(inputs, training, {**weights, "sparsity_mask": _masked(inputs)}, **kwargs)


@keras.utils.register_keras_serializable(package="kcompress")
class SparsityPreservingConvWeightsQuantizer(_tfmot.PrunePreserveDefault8BitConvWeightsQuantizer):
    """TFMOT's prune-preserving 8-bit conv weight quantizer (per-channel), with a mask that survives saving."""

    def __init__(self, **config):
        super().__init__()
        _check_fixed_config(self, config)

    @tf.autograph.experimental.do_not_convert  # see SparsityPreservingWeightsQuantizer.__call__
    def __call__(self, inputs, training, weights, **kwargs):
        return super().__call__(inputs, training, {**weights, "sparsity_mask": _masked(inputs)}, **kwargs)


def _check_fixed_config(quantizer, config):
    allowed = ("num_bits", "per_axis", "symmetric", "narrow_range")
    for key, value in config.items():
        if key not in allowed:
            raise TypeError(f"{type(quantizer).__name__} got an unexpected argument {key!r}; allowed: {list(allowed)}.")
        if getattr(quantizer, key) != value:
            raise ValueError(f"{type(quantizer).__name__} is fixed at {key}={getattr(quantizer, key)!r}, got {value!r}.")


@keras.utils.register_keras_serializable(package="kcompress")
class SparsityPreservingQuantizeConfig(_tfmot.Default8BitQuantizeConfig):
    """TFMOT's default 8-bit QuantizeConfig (Dense) whose weight quantizer keeps zeros at zero.

    TFMOT's own config does not save which weight quantizer it holds, so a prune-preserving
    model reloaded from a file would quietly train its zeros back; this class saves as itself.
    """

    def __init__(self, weight_attrs, activation_attrs, quantize_output):
        super().__init__(weight_attrs, activation_attrs, quantize_output)
        self.weight_quantizer = SparsityPreservingWeightsQuantizer()


@keras.utils.register_keras_serializable(package="kcompress")
class SparsityPreservingConvQuantizeConfig(_tfmot.Default8BitConvQuantizeConfig):
    """TFMOT's 8-bit Conv2D QuantizeConfig (per-channel weights) whose weight quantizer keeps zeros at zero."""

    def __init__(self, weight_attrs, activation_attrs, quantize_output):
        super().__init__(weight_attrs, activation_attrs, quantize_output)
        self.weight_quantizer = SparsityPreservingConvWeightsQuantizer()


_PROTECTED = (keras.layers.Conv2D, keras.layers.Dense, keras.layers.DepthwiseConv2D)


def _sparsity_preserving(layer, config):
    """``config`` with a weight quantizer that keeps ``layer``'s zeros at zero, or None if it has no such form.

    TFMOT hands a kernel layer one of three configs: the registry's per-channel conv / per-tensor
    config, or (its layout transform, when a separate ReLU layer follows the Conv2D / Dense /
    DepthwiseConv2D) a ``NoOpQuantizeConfig`` that leaves the kernel in float and unmasked, so
    its zeros train back. That one becomes a weights-only config: the kernel is masked and
    fake-quantized, the output stays unquantized as TFMOT wants before the ReLU.
    """
    if type(layer) not in _PROTECTED:
        return config
    if isinstance(config, (SparsityPreservingConvQuantizeConfig, SparsityPreservingQuantizeConfig)):
        return config
    if isinstance(config, _tfmot.NoOpQuantizeConfig):
        # Per-channel for convolutions, per-tensor for Dense: what TFMOT's registry would give them.
        conv = isinstance(layer, keras.layers.Conv2D) or isinstance(layer, keras.layers.DepthwiseConv2D)
        cls = SparsityPreservingConvQuantizeConfig if conv else SparsityPreservingQuantizeConfig
        return cls(list(_KERNELS[type(layer).__name__]), [], False)
    if isinstance(config, _tfmot.Default8BitConvQuantizeConfig):
        return SparsityPreservingConvQuantizeConfig(config.weight_attrs, config.activation_attrs, config.quantize_output)
    if type(config) is _tfmot.Default8BitQuantizeConfig:
        return SparsityPreservingQuantizeConfig(config.weight_attrs, config.activation_attrs, config.quantize_output)
    return None


class _SparsityPreservingRegistry(_tfmot.Default8bitPrunePreserveQuantizeRegistry):
    """TFMOT's prune-preserving registry, handing out configs that save and load as such.

    TFMOT's registry leaves DepthwiseConv2D kernels unprotected; this one protects them too.
    """

    def get_quantize_config(self, layer):
        config = super().get_quantize_config(layer)
        # Decided from the layer and config types, as TFMOT's scheme does for trainable layers
        # (it skips layers whose weights are frozen, whose zeros need no protection anyway).
        kept = _sparsity_preserving(layer, config)
        return config if kept is None else kept


class _SparsityPreservingLayout(_qk.QuantizeLayoutTransform):
    """TFMOT's 8-bit layout transform, then every kernel config it chose made sparsity-preserving."""

    def __init__(self, inner):
        self._inner = inner

    def apply(self, model, layer_quantize_map):
        model, layer_quantize_map = self._inner.apply(model, layer_quantize_map)
        for layer in model.layers:
            entry = layer_quantize_map.get(layer.name)
            config = entry.get("quantize_config") if entry else None
            if config is not None:
                kept = _sparsity_preserving(layer, config)
                if kept is not None:
                    entry["quantize_config"] = kept
        return model, layer_quantize_map


class _SparsityPreservingScheme(_prune_preserve.Default8BitPrunePreserveQuantizeScheme):
    def get_layout_transformer(self):
        return _SparsityPreservingLayout(super().get_layout_transformer())

    def get_quantize_registry(self):
        return _SparsityPreservingRegistry()


def _inner(layer):
    """The layer inside quantization (and pruning) wrappers."""
    while hasattr(layer, "layer") and isinstance(layer.layer, keras.layers.Layer):
        layer = layer.layer
    return layer


def _kernels(model):
    """(layer, kernel variable) of every Conv2D / Dense / DepthwiseConv2D / SeparableConv2D kernel, wrapped or not."""
    for layer in leaf_layers(model):
        inner = _inner(layer)
        for variable in _kernel_variables(layer):
            yield inner, variable


def _kernel_variables(layer) -> list:
    """The kernel variables of ``layer`` (or of the layer it wraps), found by name.

    Inside a QuantizeWrapper, ``layer.layer.kernel`` is the fake-quantized tensor of the last call
    and ``layer.layer.weights`` is empty: the wrapper holds the variables.
    """
    attrs = _KERNELS.get(type(_inner(layer)).__name__, ())
    return [w for w in layer.weights if w.name.split("/")[-1].split(":")[0] in attrs]


def kernel_sparsity(model) -> float:
    """Fraction of zeros over the Conv2D / Dense / DepthwiseConv2D / SeparableConv2D kernels of ``model``.

    These are the weights pruning removes and the prune-preserving QAT scheme keeps at zero. A
    quantization-aware model counts the kernels inside its quantize wrappers.

    Example:
        >>> kernel_sparsity(kc.pruning.strip(pruned))
        0.8
    """
    model = check_model(model)
    total = zeros = 0
    for _, kernel in _kernels(model):
        values = kernel.numpy()
        total += values.size
        zeros += int(values.size - np.count_nonzero(values))
    return zeros / total if total else 0.0


def _unprotected(qat) -> list[str]:
    """Names of layers of ``qat`` holding kernel zeros that QAT's training would not keep at zero."""
    kept = (SparsityPreservingWeightsQuantizer, SparsityPreservingConvWeightsQuantizer,
            _tfmot.PrunePreserveDefaultWeightsQuantizer)
    out = []
    for layer in leaf_layers(qat):
        inner = _inner(layer)
        kernels = [w for w in _kernel_variables(layer) if np.any(w.numpy() == 0)]
        if not kernels:
            continue
        # A QuantizeWrapper keeps (variable, quantizer, quantizer variables) for each weight it quantizes.
        protected = {id(w) for w, quantizer, _ in getattr(layer, "_weight_vars", []) if isinstance(quantizer, kept)}
        if any(id(w) not in protected for w in kernels):
            out.append(f"{inner.name!r} ({type(inner).__name__})")
    return out


def _is_graph_model(model) -> bool:
    return isinstance(model, keras.Sequential) or bool(getattr(model, "_is_graph_network", False))


def _resolve_layers(model, layers) -> list[str]:
    chosen, _ = resolve_layers(model, layers, accept=lambda layer: not isinstance(layer, keras.layers.InputLayer),
                               what="the model's layers other than its inputs")
    return [layer.name for layer in chosen]


def _custom_objects(model) -> dict:
    objects = {}
    for layer in model.submodules:
        if isinstance(layer, keras.layers.Layer):
            cls = type(layer)
            objects[cls.__name__] = cls
            objects[keras.saving.get_registered_name(cls)] = cls
    return objects


def _check_quantizable(model, chosen):
    model = check_model(model)
    if not _is_graph_model(model):
        raise ValueError(
            f"model must be a Functional or Sequential model; {type(model).__name__} is subclassed, and QAT "
            "rewrites the layer graph, which a subclassed model does not expose. Build it with the Functional API."
        )
    kinds = {type(layer).__name__ for layer in model.submodules if isinstance(layer, keras.layers.Layer)}
    if "PruneLowMagnitude" in kinds:
        raise ValueError(
            "model still holds pruning wrappers; call kcompress.pruning.strip(model) first, then "
            "quantize_aware(stripped, preserve_sparsity=True) to keep its zeros."
        )
    if any(kind.startswith("Quantize") for kind in kinds):
        raise ValueError(f"model {model.name!r} is already quantization-aware (it holds Quantize* layers).")
    for layer in model.layers:
        if layer.name not in chosen:
            continue
        if isinstance(layer, keras.Model):
            raise ValueError(
                f"layer {layer.name!r} is a nested model, which TFMOT cannot quantize inside another model; "
                f"leave it out with layers=[...] or rebuild the model flat."
            )
        try:
            layer.get_config()
        except NotImplementedError as err:
            raise ValueError(
                f"layer {layer.name!r} ({type(layer).__name__}) has no get_config(); QAT clones the model, so "
                "implement get_config() for it."
            ) from err


def _apply(model, layers, preserve_sparsity):
    chosen = _resolve_layers(model, layers)
    _check_quantizable(model, chosen)
    if preserve_sparsity is None:
        sparsity = kernel_sparsity(model)
        preserve_sparsity = sparsity >= SPARSE_THRESHOLD
        if preserve_sparsity:
            logging.info("Kernels are %.1f%% zeros: preserving sparsity during QAT.", 100 * sparsity)
    elif not isinstance(preserve_sparsity, bool):
        raise TypeError(f"preserve_sparsity must be None, True or False, got {preserve_sparsity!r}.")
    inner = (_SparsityPreservingScheme() if preserve_sparsity
             else _default_8bit.Default8BitQuantizeScheme())
    scheme = _CollectingScheme(inner, set(chosen), check_default=preserve_sparsity)
    with quantize_scope(_custom_objects(model)):
        copy = copy_model(model)

        def annotate(layer):
            if layer.name in chosen:
                return _qk.quantize_annotate_layer(layer)
            return layer

        annotated = keras.models.clone_model(copy, clone_function=annotate)
        qat = _loadable(_qk.quantize_apply(annotated, scheme))
    if preserve_sparsity:
        unprotected = _unprotected(qat)
        if unprotected:
            warnings.warn(
                f"QAT will not keep the zeros of layer(s) {', '.join(unprotected)}: they are left in float or "
                "have a QuantizeConfig without a sparsity-preserving weight quantizer, so fine-tuning trains "
                "their zeros back. Quantize them too (layers=None) or annotate them with "
                "kcompress.quantization.SparsityPreservingQuantizeConfig / SparsityPreservingConvQuantizeConfig.",
                stacklevel=3,
            )
    return qat, [layer for layer in model.layers if any(layer.name == u.name for u in scheme.registry.unsupported)], \
        preserve_sparsity, chosen


def unsupported_layers(model, preserve_sparsity: bool = False) -> list[str]:
    """Names of the layers of ``model`` that QAT cannot quantize (a dry run of :func:`quantize_aware`).

    Args:
        model: a Functional or Sequential tf_keras model.
        preserve_sparsity: check against the prune-preserving scheme, which supports fewer layers.

    Returns:
        Layer names, in model order; empty when the whole model can be quantized.

    Example:
        >>> unsupported_layers(model)
        ['my_custom_scale']
    """
    check_bool("preserve_sparsity", preserve_sparsity)
    _, unsupported, _, _ = _apply(check_model(model), None, preserve_sparsity)
    return [layer.name for layer in unsupported]


def quantize_aware(model, layers=None, preserve_sparsity: bool | None = None):
    """Returns a quantization-aware copy of ``model`` to fine-tune, then export as int8.

    Fake-quantization of weights and activations (TFMOT's default 8-bit scheme: per-channel
    symmetric int8 conv weights, per-tensor dense weights, asymmetric activations) lets training
    adapt to the rounding the int8 flatbuffer will do. The copy starts from ``model``'s weights
    and has no optimizer: compile it (a learning rate about 10x below the original training's
    suits fine-tuning), fit for an epoch or a few, and export with
    ``kcompress.export.to_tflite(qat, "int8")``, which needs no calibration data for it.

    With ``preserve_sparsity`` the prune-preserving scheme
    (``tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme``) multiplies each
    Conv2D / Dense / DepthwiseConv2D kernel (and both kernels of a SeparableConv2D, which QAT
    splits into a depthwise and a 1x1 conv) by its zero mask before fake-quantizing it, so a
    pruned model's zeros survive QAT; plain QAT lets them grow back. That holds whatever follows
    the layer: TFMOT leaves a kernel followed by a separate ReLU layer unquantized and unmasked
    (a ``NoOpQuantizeConfig``), and DepthwiseConv2D kernels unmasked; kcompress masks and
    fake-quantizes those too. A kernel with zeros that still would train freely (a layer left in
    float by ``layers=``, or one you annotated with your own config) is named in a
    ``UserWarning`` before training. kcompress hands out its configs as
    :class:`SparsityPreservingQuantizeConfig` / :class:`SparsityPreservingConvQuantizeConfig`,
    which keep doing so after the model is saved and loaded (TFMOT's would not).

    Call it inside ``strategy.scope()`` to train under a ``tf.distribute`` strategy.

    Args:
        model: a Functional or Sequential tf_keras or Keras 3 model (a pruned one after
            ``kcompress.pruning.strip``).
        layers: ``None`` to quantize every layer, or the layers to quantize as a name, a layer
            class, one of the model's layers or a list of them (as everywhere in kcompress:
            :func:`kcompress.validation.resolve_layers`); the others stay in float.
        preserve_sparsity: keep the zeros of the convolution and Dense kernels. ``None`` (default)
            turns it on when at least ``kcompress.pruning.PRUNED_FRACTION`` (10%) of the kernels are
            zeros (see :func:`kernel_sparsity`).

    Returns:
        A new, uncompiled tf_keras model with quantize wrappers.

    Raises:
        TypeError: ``model`` is not a tf_keras model; bad ``layers`` / ``preserve_sparsity`` types.
        ValueError: a subclassed model, pruning wrappers still in place, an unknown layer
            name, or layers QAT cannot handle (all named, with the ``layers=`` call that
            leaves them in float).

    Example:
        >>> qat = kc.quantization.quantize_aware(model)
        >>> kc.models.compile_classifier(qat, 1e-4)
        >>> kc.models.fit(qat, ds, epochs=2)
        >>> flat = kc.export.to_tflite(qat, "int8")
    """
    model = check_model(model)
    qat, unsupported, preserve_sparsity, chosen = _apply(model, layers, preserve_sparsity)
    if unsupported:
        bad = ", ".join(f"{layer.name!r} ({type(layer).__name__})" for layer in unsupported)
        rest = [name for name in chosen if all(name != layer.name for layer in unsupported)]
        scheme = "prune-preserving" if preserve_sparsity else "default 8-bit"
        hint = (" With preserve_sparsity=True only Conv2D, Dense, DepthwiseConv2D and weightless layers TFMOT "
                "knows are supported; preserve_sparsity=False supports more." if preserve_sparsity else "")
        raise ValueError(
            f"QAT cannot quantize layer(s) {bad} of model {model.name!r}: TFMOT's {scheme} scheme has no "
            f"QuantizeConfig for them.{hint} To leave them in float and quantize the rest, call "
            f"quantize_aware(model, layers={rest!r}); or annotate them yourself with "
            "tfmot.quantization.keras.quantize_annotate_layer(layer, quantize_config=...)."
        )
    logging.info("QAT: %d of %d layers quantized (%s scheme).", len(chosen),
                 sum(not isinstance(x, keras.layers.InputLayer) for x in model.layers),
                 "prune-preserving" if preserve_sparsity else "default 8-bit")
    return qat
