"""``from_keras3`` / ``to_keras3``: rebuild a model's layer graph in the other Keras.

TFMOT, and so kcompress, runs on tf_keras (Keras 2). A Keras 3 Sequential or
Functional model is rebuilt layer by layer as a tf_keras model of the same
structure: every layer becomes the tf_keras layer of the same class and name
(see :mod:`kcompress.keras3.layers` for the config translation), is called on
the rebuilt inputs exactly as the original was, and gets the original's
weights. Nested Sequential / Functional sub-models are rebuilt nested, so layer
names (``layers=[...]`` arguments, distillation hints) keep working.

The graph is read from the model's public ``get_config()`` (which layer feeds
which) and its layers from ``get_layer``; no layer is ever re-traced.
"""

from __future__ import annotations

from collections import defaultdict

from absl import logging

from kcompress._keras import is_keras3_model
from kcompress._keras import keras as tf_keras
from kcompress.keras3 import layers as _layers

__all__ = ["from_keras3", "to_keras3"]

# Class names of training-time wrappers (pruning, clustering, QAT) that have no plain Keras counterpart.
_WRAPPER_FIXES = {
    "PruneLowMagnitude": "kcompress.pruning.strip(model)",
    "ClusterWeights": "kcompress.clustering.strip(model)",
    "ClusterWeightsMHA": "kcompress.clustering.strip(model)",
}


def _keras3():
    # Imported here, not at module level, so that importing kcompress never depends on Keras 3
    # (TensorFlow 2.21 happens to load the package already, but that may change) and no other
    # kcompress module can reach Keras 3 through this one by accident.
    import keras

    return keras


def _keras3_library() -> _layers.Library:
    return _layers.Library(_keras3(), "Keras 3", is_keras3=True)


def _keras3_functional_class():
    # Keras 3 exports no public name for its Functional class; its location is pinned here,
    # the one module that reads Keras 3 internals.
    from keras.src.models.functional import Functional

    return Functional


class _Ref:
    """A reference to output ``tensor`` of call number ``call`` of layer ``name``."""

    __slots__ = ("name", "call", "tensor")

    def __init__(self, name: str, call: int, tensor: int):
        self.name, self.call, self.tensor = name, call, tensor


def _parse_keras3_value(value):
    """A Keras 3 serialized call argument with tensors replaced by :class:`_Ref`."""
    if isinstance(value, dict):
        kind = value.get("class_name")
        if kind == "__keras_tensor__":
            name, call, tensor = value["config"]["keras_history"]
            return _Ref(name, call, tensor)
        if kind == "__tuple__":
            return tuple(_parse_keras3_value(v) for v in value["config"]["value"])
        return {k: _parse_keras3_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_parse_keras3_value(v) for v in value)
    return value


def _parse_tf_keras_node(node):
    """(args, kwargs) of a tf_keras (legacy-format) inbound node."""
    if isinstance(node, dict):  # the Keras-3-style format, should tf_keras ever emit it
        return _parse_keras3_value(node.get("args", [])), _parse_keras3_value(node.get("kwargs", {}))
    refs = [_Ref(entry[0], entry[1], entry[2]) for entry in node]
    kwargs = dict(node[0][3]) if node and len(node[0]) > 3 and node[0][3] else {}
    return ((refs[0],) if len(refs) == 1 else (refs,)), kwargs


def _io_refs(value) -> tuple[list[_Ref], bool]:
    """The refs of a config's ``input_layers`` / ``output_layers``, and whether it is one ref."""
    if isinstance(value, (list, tuple)) and len(value) == 3 and isinstance(value[0], str):
        return [_Ref(*value)], True
    if isinstance(value, dict):
        raise ValueError("models with dict inputs or outputs are not supported; use a list.")
    return [_Ref(*v) for v in value], len(value) == 1


def _walk(value, fn):
    if isinstance(value, _Ref):
        return fn(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_walk(v, fn) for v in value)
    if isinstance(value, dict):
        return {k: _walk(v, fn) for k, v in value.items()}
    return value


def _refs_in(value) -> list[_Ref]:
    found = []
    _walk(value, found.append)
    return found


class _Converter:
    """Rebuilds models of ``source`` (a :class:`kcompress.keras3.layers.Library`) in ``target``."""

    def __init__(self, source: _layers.Library, target: _layers.Library):
        self.source, self.target = source, target

    # -- model kinds -----------------------------------------------------------------
    def _is_sequential(self, model) -> bool:
        seq = self.source.module.Sequential
        return isinstance(model, seq) and type(model).call is seq.call

    def _is_functional(self, model) -> bool:
        if self.source.is_keras3:
            functional = _keras3_functional_class()
            return isinstance(model, functional) and type(model).call is functional.call
        return bool(getattr(model, "_is_graph_network", False)) and not isinstance(model, tf_keras.Sequential)

    def _subclassed_error(self, model, argname: str) -> ValueError:
        lib = "keras" if self.source.is_keras3 else "tf_keras"
        return ValueError(
            f"{argname} {model.name!r} is a subclassed {self.source.name} model "
            f"({type(model).__module__}.{type(model).__name__}); the conversion rebuilds the layer graph, "
            f"which a subclassed model's call() hides. Build it as a Sequential ({lib}.Sequential([...])) "
            f"or Functional ({lib}.Model(inputs, outputs)) model, with the same layer names, and copy the "
            "weights over with set_weights."
        )

    def model(self, model, argname: str = "model"):
        if self._is_sequential(model):
            return self._sequential(model)
        if self._is_functional(model):
            config = model.get_config()
            if "layers" in config:
                return self._functional(model, config)
        raise self._subclassed_error(model, argname)

    # -- pieces ----------------------------------------------------------------------
    def _layer(self, layer):
        if isinstance(layer, self.source.module.Model):
            return self.model(layer, argname="sub-model")
        return _layers.convert_layer(layer, self.source, self.target)

    def _copy(self, layer, new) -> None:
        if not isinstance(layer, self.source.module.Model):  # sub-models were filled when rebuilt
            _layers.copy_weights(layer, new, self.source)

    def _input(self, config: dict, owner):
        shape = config.get("batch_shape", config.get("batch_input_shape"))
        for flag in ("sparse", "ragged", "optional"):
            if config.get(flag):
                raise ValueError(
                    f"the input {config.get('name')!r} of {owner.name!r} is {flag}; only dense inputs convert."
                )
        return self.target.module.Input(batch_shape=tuple(shape), dtype=config.get("dtype"), name=config.get("name"))

    def _sequential(self, model):
        entries = model.get_config().get("layers", [])
        if entries and entries[0]["class_name"] == "InputLayer":
            inputs = self._input(entries[0]["config"], model)
        elif getattr(model, "inputs", None):
            spec = model.inputs[0]
            inputs = self.target.module.Input(batch_shape=tuple(spec.shape), dtype=spec.dtype.name
                                              if hasattr(spec.dtype, "name") else spec.dtype)
        else:
            raise ValueError(
                f"Sequential model {model.name!r} is not built, so its input shape is unknown; start it with "
                "an Input(shape) or call model.build(input_shape) before converting it."
            )
        rebuilt = self.target.module.Sequential(name=model.name)
        rebuilt.add(inputs)
        pairs = []
        for layer in model.layers:
            new = self._layer(layer)
            rebuilt.add(new)
            pairs.append((layer, new))
        for layer, new in pairs:
            self._copy(layer, new)
        if not model.trainable:  # setting True would also unfreeze every layer
            rebuilt.trainable = False
        return rebuilt

    def _functional(self, model, config: dict):
        calls = []  # (name, source layer, [(args, kwargs), ...]) in config order
        for entry in config["layers"]:
            name = entry["name"]
            if entry["class_name"] == "InputLayer":
                continue
            try:
                layer = model.get_layer(name)
            except ValueError as err:  # a Keras 3 op (keras.ops.*) used directly in the graph
                raise ValueError(
                    f"{name!r} ({entry['class_name']}) in model {model.name!r} is an operation, not a layer, "
                    f"so it cannot be converted; wrap it in a supported layer. Supported layers: "
                    f"{', '.join(_layers.SUPPORTED_LAYERS)}."
                ) from err
            if self.source.is_keras3:
                nodes = [(_parse_keras3_value(node.get("args", [])), _parse_keras3_value(node.get("kwargs", {})))
                         for node in entry["inbound_nodes"]]
            else:
                nodes = [_parse_tf_keras_node(node) for node in entry["inbound_nodes"]]
            calls.append((name, layer, nodes))

        in_refs, single_in = _io_refs(config["input_layers"])
        out_refs, single_out = _io_refs(config["output_layers"])
        offsets = self._call_offsets(model, calls, in_refs, out_refs)

        outputs = defaultdict(list)  # layer name -> output structure of each call, in call order
        for entry in config["layers"]:
            if entry["class_name"] == "InputLayer":
                outputs[entry["name"]].append(self._input(entry["config"], model))

        def resolve(ref: _Ref, io: bool = False):
            call = ref.call - offsets[ref.name][1 if io else 0]
            out = outputs[ref.name][call]
            if isinstance(out, (list, tuple)):
                return out[ref.tensor]
            return out

        def ready(ref: _Ref) -> bool:
            return ref.call - offsets[ref.name][0] < len(outputs[ref.name])

        new_layers = {}
        pending = [(name, layer, i, node) for name, layer, nodes in calls for i, node in enumerate(nodes)]
        while pending:
            progressed, rest = False, []
            for name, layer, i, (args, kwargs) in pending:
                if i != len(outputs[name]) or not all(ready(r) for r in _refs_in((args, kwargs))):
                    rest.append((name, layer, i, (args, kwargs)))
                    continue
                if _refs_in(kwargs):
                    raise ValueError(
                        f"layer {name!r} of {model.name!r} is called with a tensor keyword argument "
                        f"({sorted(kwargs)}); only positional tensor inputs convert."
                    )
                if name not in new_layers:
                    new_layers[name] = self._layer(layer)
                call_kwargs = {k: v for k, v in kwargs.items() if v is not None}
                outputs[name].append(new_layers[name](*_walk(args, resolve), **call_kwargs))
                progressed = True
            if not progressed:
                raise ValueError(f"the layer graph of {model.name!r} could not be ordered; is it a valid model?")
            pending = rest

        for name, layer, _ in calls:
            self._copy(layer, new_layers[name])
        ins = [resolve(r, io=True) for r in in_refs]
        outs = [resolve(r, io=True) for r in out_refs]
        rebuilt = self.target.module.Model(
            inputs=ins[0] if single_in else ins, outputs=outs[0] if single_out else outs, name=model.name
        )
        if not model.trainable:  # setting True would also unfreeze every layer
            rebuilt.trainable = False
        return rebuilt

    def _call_offsets(self, model, calls, in_refs, out_refs) -> dict:
        """Per layer name: (offset of inbound-node refs, offset of input/output refs) to its call numbers.

        Both Keras number the calls of a layer that belong to the model from 0, except that a
        nested model's calls start at 1 (call 0 links the sub-model's own input to its output).
        tf_keras applies that to every reference; Keras 3 only to ``input_layers`` /
        ``output_layers``. With tf_keras the first call of a layer is the smallest number
        referenced: every call in the model feeds another or is an output.
        """
        offsets = defaultdict(lambda: (0, 0))
        if self.source.is_keras3:
            functional = _keras3_functional_class()
            for name, layer, _ in calls:
                offsets[name] = (0, 1 if isinstance(layer, functional) else 0)
            return offsets
        lowest = {}
        everything = [r for _, _, nodes in calls for node in nodes for r in _refs_in(node)] + in_refs + out_refs
        for ref in everything:
            lowest[ref.name] = min(ref.call, lowest.get(ref.name, ref.call))
        for name, low in lowest.items():
            offsets[name] = (low, low)
        return offsets


def _check_no_wrappers(model) -> None:
    def walk(m):
        for layer in m.layers:
            yield layer
            if isinstance(layer, tf_keras.Model):
                yield from walk(layer)

    for layer in walk(model):
        kind = type(layer).__name__
        if kind in _WRAPPER_FIXES or kind.startswith("Quantize") or isinstance(layer, tf_keras.layers.Wrapper):
            fix = _WRAPPER_FIXES.get(kind)
            how = (f"strip it first: to_keras3({fix})" if fix else
                   "strip it first (kcompress.pruning.strip / kcompress.clustering.strip). A quantization-aware "
                   "(QAT) model has no plain Keras equivalent: export it with kcompress.export.to_tflite(model, "
                   "'int8') and convert the float model it was made from")
            raise ValueError(
                f"model {model.name!r} still holds the training wrapper {kind} (layer {layer.name!r}); Keras 3 "
                f"cannot load kcompress/TFMOT wrappers, so {how}."
            )


def from_keras3(model):
    """Rebuilds a Keras 3 Sequential or Functional model as an equivalent tf_keras model.

    Every layer becomes the tf_keras layer of the same class, name and config with
    the same weights, wired the same way, so outputs agree to float rounding.
    Nested Sequential / Functional sub-models stay nested. Every kcompress entry point
    calls this for you when handed a Keras 3 model; call it yourself to convert once
    and reuse the result. A Keras 3 model loaded with ``keras.saving.load_model``
    converts the same way.

    Args:
        model: a built Keras 3 ``keras.Sequential`` or Functional ``keras.Model`` made
            of the layers in :data:`kcompress.keras3.SUPPORTED_LAYERS`.

    Returns:
        A new tf_keras model; the Keras 3 model is unchanged. To get a Keras 3 model
        back after compressing, see :func:`to_keras3`.

    Raises:
        TypeError: ``model`` is not a Keras 3 model (a tf_keras model needs no conversion).
        ValueError: a subclassed model, an unbuilt Sequential, or a layer, activation or
            layer setting with no tf_keras equivalent (named, with the supported list).

    Example:
        >>> import keras  # Keras 3
        >>> k3 = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
        >>> tk = kc.keras3.from_keras3(k3)
        >>> pruned = kc.pruning.prune(tk, kc.pruning.ConstantSparsity(0.8, begin_step=0))
    """
    if isinstance(model, tf_keras.Model):
        raise TypeError(f"model {model.name!r} is already a tf_keras model; pass it to kcompress as it is.")
    if not is_keras3_model(model) or not isinstance(model, _keras3().Model):
        raise TypeError(
            f"model must be a Keras 3 keras.Model (Sequential or Functional), got "
            f"{type(model).__module__}.{type(model).__name__}."
        )
    rebuilt = _Converter(_keras3_library(), _layers.tf_keras_library()).model(model)
    logging.info("Converted Keras 3 model %r (%d layers) to tf_keras.", model.name, len(model.layers))
    return rebuilt


def to_keras3(model):
    """Rebuilds a plain tf_keras Sequential or Functional model as an equivalent Keras 3 model.

    The way back after compressing: the result saves as a Keras 3 ``.keras`` file that
    plain ``keras.saving.load_model`` reads, without kcompress. Pruned models keep their
    zeros; strip the training wrappers first.

    Args:
        model: a tf_keras model made of the layers in :data:`kcompress.keras3.SUPPORTED_LAYERS`,
            with no pruning / clustering / QAT wrappers.

    Returns:
        A new Keras 3 model of the same structure, names and weights.

    Raises:
        TypeError: ``model`` is not a tf_keras model.
        ValueError: a model still holding pruning, clustering or QAT wrappers (with how to
            strip them), a subclassed model, or a layer with no Keras 3 equivalent.

    Example:
        >>> pruned = kc.pruning.prune(keras3_model, kc.pruning.ConstantSparsity(0.8, begin_step=0))
        >>> pruned.compile(...); pruned.fit(x, y, callbacks=kc.pruning.callbacks())
        >>> back = kc.keras3.to_keras3(kc.pruning.strip(pruned))
        >>> back.save("pruned.keras")  # keras.saving.load_model("pruned.keras") anywhere
    """
    if not isinstance(model, tf_keras.Model):
        hint = " It already is a Keras 3 model." if is_keras3_model(model) else ""
        raise TypeError(
            f"model must be a tf_keras.Model, got {type(model).__module__}.{type(model).__name__}.{hint}"
        )
    _check_no_wrappers(model)
    rebuilt = _Converter(_layers.tf_keras_library(), _keras3_library()).model(model)
    logging.info("Converted tf_keras model %r (%d layers) to Keras 3.", model.name, len(model.layers))
    return rebuilt
