"""Channel (filter / unit) pruning that really shrinks a model, residual and depthwise nets included.

A *channel group* is a set of channels that must be removed together: the
filters of a Conv/Dense layer, plus every tensor those channels flow into
unchanged (BatchNormalization, activations, pooling, Dropout, padding,
depthwise convolutions, global pooling, Flatten) and every tensor they are
joined with by an element-wise merge (Add, Subtract, Multiply, Average,
Maximum, Minimum). A residual stream is one group whose producers are all the
convolutions that write into it; a depthwise convolution follows its input's
channels. Concatenate stacks groups side by side. Removing channel ``c`` of a
group removes the filter ``c`` of every producer, the matching weights of
BatchNormalization / depthwise / PReLU layers, and input ``c`` of every
consumer (Conv, Dense, SeparableConv, Conv2DTranspose, the rows of a Dense
after Flatten), so the pruned model computes exactly what the original
computes when those channels are zeroed at the consumers.

Channels are never removed from a group that reaches the model's output or
input, or passes through a layer whose effect on channels kcompress cannot
follow (Reshape, LayerNormalization, Softmax, a nested model, a custom layer,
a shared layer, ...): such groups are reported with the reason.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from absl import logging

from kcompress._keras import keras
from kcompress.pruning.prune import _check_graph_model
from kcompress.pruning.wrapper import is_pruning_wrapper
from kcompress.validation import check_fraction, check_int, resolve_layers

L = keras.layers
CRITERIA = ("l1", "l2")

# Layers that act on each channel on its own and hold no per-channel weights.
_ELEMENTWISE = tuple(
    getattr(L, name) for name in (
        "Activation", "ReLU", "LeakyReLU", "ELU", "ThresholdedReLU", "Dropout", "SpatialDropout1D",
        "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
        "ActivityRegularization", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D",
        "AveragePooling2D", "AveragePooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
        "GlobalAveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
        "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
        "UpSampling1D", "UpSampling2D", "UpSampling3D",
    ) if hasattr(L, name)
)
_MERGES = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)
# Convolutions whose filters are the last kernel axis and whose input channels the second to last.
_CONVS = (L.Conv1D, L.Conv2D, L.Conv3D)
_TRANSPOSED = tuple(getattr(L, n) for n in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose") if hasattr(L, n))
_SEPARABLE = tuple(getattr(L, n) for n in ("SeparableConv1D", "SeparableConv2D") if hasattr(L, n))
_DEPTHWISE = tuple(getattr(L, n) for n in ("DepthwiseConv1D", "DepthwiseConv2D") if hasattr(L, n))


def _last_axis(axis, rank) -> bool:
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    return len(axes) == 1 and axes[0] in (-1, rank - 1)


def _channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") in (None, "channels_last")


def _kind(layer) -> str:
    """How channels flow through ``layer``: producer, separable, depthwise, bn, prelu, elementwise,
    merge, concat, flatten, or opaque."""
    if isinstance(layer, keras.Model) or is_pruning_wrapper(layer):
        return "opaque"
    if isinstance(layer, _SEPARABLE):
        return "separable" if _channels_last(layer) else "opaque"
    if isinstance(layer, _DEPTHWISE):
        return "depthwise" if _channels_last(layer) and layer.depth_multiplier == 1 else "opaque"
    if isinstance(layer, _TRANSPOSED):
        return "producer" if _channels_last(layer) else "opaque"
    if isinstance(layer, _CONVS):
        return "producer" if _channels_last(layer) and (getattr(layer, "groups", 1) or 1) == 1 else "opaque"
    if type(layer) is L.Dense:
        return "producer"
    if isinstance(layer, L.BatchNormalization):
        rank = len(layer.input_shape)
        return "bn" if _last_axis(layer.axis, rank) else "opaque"
    if isinstance(layer, L.PReLU):
        rank = len(layer.input_shape)
        shared = set(layer.shared_axes or [])
        return "prelu" if shared >= set(range(1, rank - 1)) else "opaque"
    if isinstance(layer, L.Flatten):
        return "flatten" if _channels_last(layer) else "opaque"
    if isinstance(layer, _ELEMENTWISE):
        return "elementwise" if _channels_last(layer) else "opaque"
    if isinstance(layer, _MERGES):
        return "merge"
    if isinstance(layer, L.Concatenate):
        rank = len(layer.output_shape)
        return "concat" if layer.axis in (-1, rank - 1) else "opaque"
    return "opaque"


def _width(layer) -> int:
    shape = layer.output_shape
    shape = shape[0] if isinstance(shape, list) else shape
    return int(shape[-1]) if shape and shape[-1] is not None else 0


@dataclasses.dataclass(frozen=True)
class ChannelGroup:
    """Channels that are removed together.

    Attributes:
        name: the group's name: its first producer's name.
        producers: layers whose filters / units are these channels.
        members: layers the channels pass through unchanged or are merged in.
        consumers: layers that read the channels as inputs.
        width: number of channels.
        prunable: whether channels can be removed.
        reason: why not, when ``prunable`` is False.
    """

    name: str
    producers: tuple
    members: tuple
    consumers: tuple
    width: int
    prunable: bool
    reason: str = ""


def _layer_refs(obj, refs=None) -> list[str]:
    """Names of the layers referenced in a Functional config's inbound nodes, call kwargs included."""
    refs = [] if refs is None else refs
    if isinstance(obj, (list, tuple)):
        if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int) and isinstance(obj[2], int):
            refs.append(obj[0])
            for rest in obj[3:]:
                _layer_refs(rest, refs)
        else:
            for item in obj:
                _layer_refs(item, refs)
    elif isinstance(obj, dict):
        for item in obj.values():
            _layer_refs(item, refs)
    return refs


class _Graph:
    """Channel bookkeeping of a Functional / Sequential model (union-find over channel groups)."""

    def __init__(self, model):
        self.model = model
        self.parent: list[int] = []
        self.size: list[int] = []
        self.frozen: dict[int, str] = {}
        self.producers: dict[int, list[str]] = {}
        self.members: dict[int, list[str]] = {}
        self.consumers: dict[int, list[str]] = {}
        self.out: dict[str, tuple] = {}      # layer -> ("seg", [(gid, size), ...]) or ("flat", positions, segs)
        self.inputs: dict[str, tuple] = {}   # layer -> its input descriptor (consumers and members)
        self.own: dict[str, int] = {}        # producer layer -> its group
        self._build()

    # -- union-find
    def new(self, size, reason=None) -> int:
        gid = len(self.parent)
        self.parent.append(gid)
        self.size.append(int(size))
        if reason:
            self.frozen[gid] = reason
        return gid

    def find(self, g) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a, b):
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        if b < a:
            a, b = b, a
        self.parent[b] = a
        if b in self.frozen and a not in self.frozen:
            self.frozen[a] = self.frozen[b]
        for table in (self.producers, self.members, self.consumers):
            table.setdefault(a, []).extend(table.pop(b, []))

    def freeze(self, desc, reason):
        for gid, _ in self.segments(desc):
            root = self.find(gid)
            self.frozen.setdefault(root, reason)

    @staticmethod
    def segments(desc):
        return desc[1] if desc[0] == "seg" else desc[2]

    def note(self, table, desc, name):
        for gid, _ in self.segments(desc):
            lst = table.setdefault(self.find(gid), [])
            if name not in lst:
                lst.append(name)

    # -- graph
    def _inbound(self):
        """Layer name -> names of the layers it reads, in order; None when a layer is shared."""
        model = self.model
        if isinstance(model, keras.Sequential):
            names = [layer.name for layer in model.layers]
            return {b: [a] for a, b in zip(names, names[1:], strict=False)} | {names[0]: []}
        result = {}
        for entry in model.get_config()["layers"]:
            nodes = entry.get("inbound_nodes", [])
            if len(nodes) > 1:
                result[entry["name"]] = None
                continue
            refs = _layer_refs(nodes)
            result[entry["name"]] = refs
        return result

    def _build(self):
        model = self.model
        inbound = self._inbound()
        sequential = isinstance(model, keras.Sequential)
        layers = list(model.layers)
        if sequential:
            first = layers[0]
            shape = first.input_shape
            self.out["__input__"] = ("seg", [(self.new(shape[-1] or 0, "it is the model input"), shape[-1] or 0)])
            inbound[first.name] = ["__input__"]
        for layer in layers:
            name = layer.name
            refs = inbound.get(name, [])
            if isinstance(layer, L.InputLayer):
                w = _width(layer)
                self.out[name] = ("seg", [(self.new(w, "it is the model input"), w)])
                continue
            ins = [self.out[r] for r in (refs or []) if r in self.out]
            kind = _kind(layer)
            if refs is None:
                kind, why = "opaque", f"{name!r} is called more than once (a shared layer)"
            else:
                why = f"it flows into {type(layer).__name__} {name!r}, whose effect on channels kcompress cannot follow"
            if kind != "opaque" and kind not in ("merge", "concat") and len(ins) != 1:
                kind = "opaque"
            if kind in ("producer", "separable"):
                desc = ins[0]
                if desc[0] == "flat" and not isinstance(layer, L.Dense):
                    self.freeze(desc, why)
                self.inputs[name] = desc
                self.note(self.consumers, desc, name)
                w = _width(layer)
                gid = self.new(w)
                self.own[name] = gid
                self.producers[gid] = [name]
                self.out[name] = ("seg", [(gid, w)])
            elif kind in ("depthwise", "bn", "prelu", "elementwise"):
                desc = ins[0]
                if desc[0] == "flat" and kind != "elementwise":
                    self.freeze(desc, why)
                    self.out[name] = ("seg", [(self.new(_width(layer), why), _width(layer))])
                    continue
                self.inputs[name] = desc
                self.note(self.members, desc, name)
                self.out[name] = desc
            elif kind == "flatten":
                desc = ins[0]
                shape = layer.input_shape
                if desc[0] == "flat" or any(d is None for d in shape[1:]):
                    self.freeze(desc, why)
                    self.out[name] = ("seg", [(self.new(_width(layer), why), _width(layer))])
                    continue
                positions = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
                self.note(self.members, desc, name)
                self.out[name] = ("flat", positions, desc[1])
            elif kind == "merge" and ins and all(d[0] == "seg" for d in ins) and \
                    all([s for _, s in d[1]] == [s for _, s in ins[0][1]] for d in ins):
                for d in ins[1:]:
                    for (a, _), (b, _) in zip(ins[0][1], d[1], strict=True):
                        self.union(a, b)
                for d in ins:
                    self.note(self.members, d, name)
                self.out[name] = ins[0]
            elif kind == "concat" and ins and all(d[0] == "seg" for d in ins):
                segs = [seg for d in ins for seg in d[1]]
                for d in ins:
                    self.note(self.members, d, name)
                self.out[name] = ("seg", segs)
            else:
                for d in ins:
                    self.freeze(d, why)
                w = _width(layer)
                self.out[name] = ("seg", [(self.new(w, why), w)])
        outputs = [layers[-1].name] if sequential else [x[0] for x in model.get_config()["output_layers"]]
        for name in outputs:
            self.freeze(self.out[name], f"its channels reach the model output through {name!r}")

    def groups(self) -> list[ChannelGroup]:
        seen, result = set(), []
        for gid in sorted(self.own.values()):
            root = self.find(gid)
            if root in seen:
                continue
            seen.add(root)
            producers = tuple(self.producers.get(root, []))
            reason = self.frozen.get(root, "")
            result.append(ChannelGroup(
                name=producers[0], producers=producers, members=tuple(self.members.get(root, [])),
                consumers=tuple(self.consumers.get(root, [])), width=self.size[root],
                prunable=not reason and self.size[root] > 1, reason=reason or ("" if self.size[root] > 1 else "it has one channel"),
            ))
        return result

    def kept(self, desc, keep: dict) -> np.ndarray:
        """Indices of the kept channels of a tensor, given the kept channels of each group root."""
        segs = self.segments(desc)
        parts, offset = [], 0
        for gid, size in segs:
            root = self.find(gid)
            idx = keep.get(root, np.arange(size))
            parts.append(offset + idx)
            offset += size
        channels = np.concatenate(parts) if parts else np.zeros(0, int)
        if desc[0] == "flat":
            positions = desc[1]
            return (np.arange(positions)[:, None] * offset + channels[None, :]).reshape(-1)
        return channels


def channel_groups(model) -> list[ChannelGroup]:
    """The channel groups of ``model``: which filters must be removed together, and which cannot be.

    Args:
        model: a Sequential or Functional tf_keras model (not pruning-wrapped).

    Returns:
        A list of :class:`ChannelGroup`, one per group of Conv/Dense outputs, in layer order.

    Example:
        >>> [(g.name, g.width, g.prunable) for g in channel_groups(resnet)]
        [('stem_conv', 16, True), ('stage1_block1_a_conv', 16, True), ...]
    """
    model = _check_input_model(model)
    return _Graph(model).groups()


def _check_input_model(model):
    model = _check_graph_model(model)
    if any(is_pruning_wrapper(layer) for layer in model.layers):
        raise ValueError("model holds pruning wrappers; strip() it before prune_channels.")
    return model


def _producer_scores(layer, criterion) -> np.ndarray:
    """Norm of each output channel's weights (filters are the kernel's last axis, or axis -2 for transposed convs)."""
    if isinstance(layer, _SEPARABLE):
        kernel = layer.pointwise_kernel.numpy()
    else:
        kernel = layer.kernel.numpy()
    if isinstance(layer, _TRANSPOSED):
        kernel = np.moveaxis(kernel, -2, -1)
    flat = kernel.reshape(-1, kernel.shape[-1])
    return np.abs(flat).sum(0) if criterion == "l1" else np.sqrt((flat**2).sum(0))


def _group_scores(model, group, criterion) -> np.ndarray:
    if len(group.producers) == 1:
        return _producer_scores(model.get_layer(group.producers[0]), criterion)
    # Several producers write into one residual stream: give each layer an equal say.
    total = np.zeros(group.width)
    for name in group.producers:
        s = _producer_scores(model.get_layer(name), criterion)
        total += s / (s.mean() + 1e-12)
    return total


def _check_ratio(where, value):
    check_fraction(where, value, low_open=True, high_open=True)


def prune_channels(model, ratio: float | dict | None = None, criterion: str = "l1", layers=None, channels=None):
    """Removes the filters / units with the smallest norm from each channel group, for a smaller model.

    Groups are found across residual Add/Multiply/Concatenate joins, BatchNormalization,
    depthwise and separable convolutions (see :func:`channel_groups`); the whole group
    loses the same channels. A group that reaches the model output keeps its channels.
    The model passed in is not changed.

    Args:
        model: a Sequential or Functional tf_keras model (not pruning-wrapped).
        ratio: fraction of channels to remove from each prunable group, in (0, 1); at
            least one is kept. A dict ``{layer_name: ratio}`` cuts only the groups of
            those layers (any producer of a group names it), each by its own ratio.
        criterion: ``"l1"`` or ``"l2"`` norm of each filter's weights (summed over a
            group's producers, each normalised by its mean).
        layers: the layers whose groups are cut (a name, class, layer or list of them, as
            :func:`kcompress.validation.resolve_layers` takes; default: every prunable group).
        channels: instead of ``ratio``, ``{layer_name: n}``: how many channels each named
            group keeps (1 <= n <= its width).

    Returns:
        A new, smaller, uncompiled tf_keras model with the kept weights copied.

    Raises:
        TypeError: ``model`` is not a tf_keras model.
        ValueError: ratio outside (0, 1), bad ``channels``, unknown criterion, a named
            layer that is missing or whose group cannot be cut (with the reason), nothing
            to cut, or a wrapped or subclassed model.

    Example:
        >>> slim = prune_channels(model, ratio=0.5)
        >>> slim = prune_channels(resnet, channels={"stem_conv": 8, "stage2_block1_a_conv": 12})
    """
    model = _check_input_model(model)
    if (ratio is None) == (channels is None):
        raise ValueError("pass exactly one of ratio (a fraction or {layer: fraction}) or channels ({layer: count}).")
    ratios = dict(ratio) if isinstance(ratio, dict) else None
    if ratio is not None:
        for key, value in (ratios or {"ratio": ratio}).items():
            _check_ratio("ratio" if ratios is None else f"ratio[{key!r}]", value)
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {list(CRITERIA)}, got {criterion!r}.")
    if channels is not None:
        if not isinstance(channels, dict) or not channels:
            raise TypeError(f"channels must be a non-empty dict {{layer_name: count}}, got {channels!r}.")
        if layers is not None:
            raise ValueError("pass channels={name: count} or layers=[...] with one ratio, not both.")
        layers = list(channels)
    if ratios is not None:
        if layers is not None:
            raise ValueError("pass per-layer ratios as ratio={name: ratio} or layers=[...] with one ratio, not both.")
        layers = list(ratios)
    graph = _Graph(model)
    groups = graph.groups()
    by_layer = {p: g for g in groups for p in g.producers}
    chosen: dict[str, tuple[ChannelGroup, str]] = {}
    if layers is not None:
        named, _ = resolve_layers(model, layers, accept=lambda layer: layer.name in by_layer,
                                  what="Conv, SeparableConv, Conv2DTranspose and Dense layers (whose filters / units "
                                       "can be removed)")
        for item in (layer.name for layer in named):
            group = by_layer[item]
            if not group.prunable:
                raise ValueError(f"layer {item!r} cannot be channel-pruned: {group.reason}.")
            if group.name in chosen:
                raise ValueError(f"layers {chosen[group.name][1]!r} and {item!r} belong to one channel group; name it once.")
            chosen[group.name] = (group, item)
    else:
        for group in groups:
            if group.prunable:
                chosen[group.name] = (group, group.name)
            else:
                logging.info("Keeping all channels of %s: %s", group.name, group.reason)
    if not chosen:
        raise ValueError(f"model {model.name!r} has no layer whose filters/units can be removed.")

    keep: dict[int, np.ndarray] = {}
    for group, key in chosen.values():
        if channels is not None:
            n_keep = channels[key]
            check_int(f"channels[{key!r}]", n_keep, 1, group.width)
        else:
            r = ratios[key] if ratios is not None else ratio
            n_keep = max(1, int(round(group.width * (1.0 - r))))
        if n_keep == group.width:
            continue
        order = np.argsort(-_group_scores(model, group, criterion), kind="stable")
        keep[graph.find(graph.own[group.producers[0]])] = np.sort(order[: int(n_keep)])
    return _rebuild(model, graph, keep)


def _rebuild(model, graph: _Graph, keep: dict):
    """A copy of ``model`` without the channels not in ``keep`` (group root -> kept indices)."""
    widths = {}
    for name, gid in graph.own.items():
        root = graph.find(gid)
        if root in keep:
            widths[name] = int(len(keep[root]))
    config = model.get_config()
    for entry in config["layers"]:
        name = entry["config"]["name"]
        if name in widths:
            key = "filters" if "filters" in entry["config"] else "units"
            entry["config"][key] = widths[name]
    slim = model.__class__.from_config(config)

    def own_keep(name):
        return keep.get(graph.find(graph.own[name]))

    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        name = layer.name
        kind = _kind(layer)
        inp = graph.inputs.get(name)
        in_keep = graph.kept(inp, keep) if inp is not None else None
        if kind == "producer":
            out = own_keep(name)
            if isinstance(layer, _TRANSPOSED):
                if in_keep is not None:
                    weights[0] = weights[0][..., in_keep]
                if out is not None:
                    weights[0] = weights[0][..., out, :]
            else:
                if in_keep is not None:
                    weights[0] = weights[0][..., in_keep, :] if weights[0].ndim > 2 else weights[0][in_keep]
                if out is not None:
                    weights[0] = weights[0][..., out]
            if out is not None and layer.use_bias:
                weights[1] = weights[1][out]
        elif kind == "separable":
            out = own_keep(name)
            if in_keep is not None:
                weights[0] = weights[0][..., in_keep, :]              # depthwise (k.., Cin, m)
                m = layer.depth_multiplier
                rows = (in_keep[:, None] * m + np.arange(m)[None, :]).reshape(-1)
                weights[1] = weights[1][..., rows, :]                 # pointwise (1.., Cin*m, filters)
            if out is not None:
                weights[1] = weights[1][..., out]
                if layer.use_bias:
                    weights[2] = weights[2][out]
        elif kind == "depthwise" and in_keep is not None:
            weights[0] = weights[0][..., in_keep, :]
            if layer.use_bias:
                weights[1] = weights[1][in_keep]
        elif kind == "bn" and in_keep is not None:
            weights = [w[in_keep] for w in weights]
        elif kind == "prelu" and in_keep is not None:
            weights = [w[..., in_keep] for w in weights]
        slim.get_layer(name).set_weights(weights)
    changed = {n: w for n, w in widths.items()}
    logging.info("Channel pruning of %s: %s", model.name,
                 ", ".join(f"{n} {_width(model.get_layer(n))}->{w}" for n, w in changed.items()) or "nothing cut")
    return slim
