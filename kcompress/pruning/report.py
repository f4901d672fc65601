"""``sparsity(model)``: how many weights are zero, per layer and overall."""

from __future__ import annotations

import dataclasses

import numpy as np

from kcompress._keras import all_layers, check_model
from kcompress.pruning.prune import prunable_kernels
from kcompress.pruning.wrapper import is_pruning_wrapper

# The one rule for "these kernels were pruned": at least this fraction of them is exactly zero.
# Trained dense kernels hold next to no exact zeros (a float32 weight lands on 0.0 by chance
# about never), so any sizeable fraction comes from pruning; 10% catches a light prune too.
# quantize_aware and cluster keep the zeros of such kernels when preserve_sparsity=None.
PRUNED_FRACTION = 0.1


def _wrappers(model):
    return [layer for layer in all_layers(model) if is_pruning_wrapper(layer)]


def _own_weights(model) -> list:
    """The weights of ``model.layers`` and those the model created itself, each once.

    Not ``model.weights``: a model may hold weights it does not train or ship, e.g. a
    ``Distiller``'s frozen teacher, which stays out of its ``layers``.
    """
    seen, out = set(), []
    # Keras keeps a layer's own add_weight() variables in these two lists.
    own = list(getattr(model, "_trainable_weights", [])) + list(getattr(model, "_non_trainable_weights", []))
    for w in [*(w for layer in model.layers for w in layer.weights), *own]:
        if id(w) not in seen:
            seen.add(id(w))
            out.append(w)
    return out


def _bookkeeping(name: str) -> bool:
    """Pruning masks / thresholds and QAT's quantizer ranges and step counter: not model weights."""
    base = name.split(":")[0]
    return (any(t in base for t in ("mask", "threshold", "pruning_step", "optimizer_step"))
            or base.endswith(("_min", "_max")))


@dataclasses.dataclass(frozen=True)
class LayerSparsity:
    """Zeros in one layer's prunable kernel."""

    layer: str
    params: int
    zeros: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.params if self.params else 0.0


@dataclasses.dataclass(frozen=True)
class SparsityReport:
    """Sparsity of a model.

    Attributes:
        layers: per prunable layer (kernels; masks applied for wrapped layers).
        prunable: fraction of zeros over all prunable kernels.
        overall: fraction of zeros over every float weight of the model's layers (biases and
            BatchNorm included; pruning masks and thresholds and QAT quantizer ranges excluded; a ``Distiller``'s
            teacher, which is not in its ``layers``, excluded).
        params, zeros: counts behind ``overall``.
    """

    layers: tuple[LayerSparsity, ...]
    prunable: float
    overall: float
    params: int
    zeros: int

    def as_dict(self) -> dict:
        """Flat dict: ``sparsity`` (prunable), ``sparsity_overall`` and ``sparsity/<layer>``."""
        out = {"sparsity": self.prunable, "sparsity_overall": self.overall}
        out.update({f"sparsity/{layer.layer}": layer.sparsity for layer in self.layers})
        return out

    def to_markdown(self) -> str:
        rows = ["| layer | params | zeros | sparsity |", "|---|---:|---:|---:|"]
        rows += [f"| {x.layer} | {x.params:,} | {x.zeros:,} | {100 * x.sparsity:.2f}% |" for x in self.layers]
        total = sum(x.params for x in self.layers)
        rows.append(f"| prunable kernels | {total:,} | {sum(x.zeros for x in self.layers):,} | {100 * self.prunable:.2f}% |")
        rows.append(f"| all weights | {self.params:,} | {self.zeros:,} | {100 * self.overall:.2f}% |")
        return "\n".join(rows) + "\n"


def sparsity(model) -> SparsityReport:
    """Reports the fraction of zero weights of a (pruned, stripped, quantization-aware or plain) model.

    Prunable kernels are those of Conv / Dense layers and, in kcompress, DepthwiseConv2D and both
    kernels of SeparableConv layers; a quantization-aware model's are read inside its quantize wrappers.

    Example:
        >>> report = sparsity(strip(pruned))
        >>> report.prunable, report.layers[0].sparsity
    """
    model = check_model(model)
    per_layer: dict[str, list[int]] = {}
    for name, kernel in prunable_kernels(model):
        entry = per_layer.setdefault(name, [0, 0])
        entry[0] += kernel.size
        entry[1] += int(kernel.size - np.count_nonzero(kernel))
    layers = tuple(LayerSparsity(name, p, z) for name, (p, z) in per_layer.items())
    prunable_params = sum(x.params for x in layers)
    prunable_zeros = sum(x.zeros for x in layers)
    masks = {id(w): m for layer in _wrappers(model) for w, m, _ in layer.pruning_vars}
    params = zeros = 0
    for w in _own_weights(model):
        if w.dtype.is_floating and not _bookkeeping(w.name):
            values = w.numpy() * masks[id(w)].numpy() if id(w) in masks else w.numpy()
            params += values.size
            zeros += int(values.size - np.count_nonzero(values))
    return SparsityReport(
        layers=layers,
        prunable=prunable_zeros / prunable_params if prunable_params else 0.0,
        overall=zeros / params if params else 0.0,
        params=params,
        zeros=zeros,
    )
