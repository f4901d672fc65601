"""Entropy-coded size: the bytes Deep Compression's storage format would take for a model.

Han et al. (2016) store a pruned, weight-shared layer as (relative index, cluster
index) pairs, Huffman-code both streams, and add the codebook of shared values.
:func:`entropy_coded_size` counts exactly that for every weight tensor of any
tf_keras model, choosing per tensor the cheapest of three encodings:

* ``raw``: 32-bit floats (lossless; what small bias vectors end up as);
* ``dense``: one Huffman-coded value symbol per element (zeros included);
* ``sparse``: nonzeros only, each with a Huffman-coded ``b``-bit index gap
  (positions since the previous stored entry, 1..2**b); a gap longer than 2**b
  is bridged by filler entries holding the value zero, as in the paper.

Value symbols are the tensor's distinct values when it has at most ``levels``
of them (a clustered tensor: lossless); otherwise its nonzero values are
rounded to ``levels`` evenly spaced levels between their min and max, zeros kept
exact (lossy, flagged ``lossless=False``; :func:`quantize_levels` returns that
rounded model so its accuracy can be measured).

Side information is counted too: the value table (4 bytes per distinct value,
or 8 bytes, offset and step, for the level grid), a canonical Huffman table per
coded stream (5 bits per symbol of the alphabet: its code length), and 1 byte
naming the encoding and gap width.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math

import numpy as np

from kcompress._keras import check_model, copy_model, keras
from kcompress.validation import check_choice, check_int

ENCODINGS = ("raw", "dense", "sparse")
_TABLE_BITS_PER_SYMBOL = 5
_HEADER_BYTES = 1


def huffman_code_lengths(counts) -> dict:
    """Code lengths (bits) of a Huffman code for symbol counts ``{symbol: count}``.

    A single symbol gets a 1-bit code. Ties are broken by insertion order, so the
    result is deterministic.

    Example:
        >>> huffman_code_lengths({"a": 5, "b": 2, "c": 1, "d": 1})
        {'a': 1, 'b': 2, 'c': 3, 'd': 3}
    """
    items = [(int(c), s) for s, c in dict(counts).items() if c > 0]
    if not items:
        return {}
    if len(items) == 1:
        return {items[0][1]: 1}
    lengths = {s: 0 for _, s in items}
    order = itertools.count()
    heap = [(c, next(order), [s]) for c, s in items]
    heapq.heapify(heap)
    while len(heap) > 1:
        c1, _, g1 = heapq.heappop(heap)
        c2, _, g2 = heapq.heappop(heap)
        for s in g1 + g2:
            lengths[s] += 1
        heapq.heappush(heap, (c1 + c2, next(order), g1 + g2))
    return lengths


def huffman_bits(symbols) -> tuple[int, int]:
    """(coded bits, alphabet size) of a Huffman code of the sequence ``symbols``."""
    values, counts = np.unique(np.asarray(symbols), return_counts=True)
    lengths = huffman_code_lengths(dict(zip(values.tolist(), counts.tolist(), strict=True)))
    return int(sum(lengths[v] * c for v, c in zip(values.tolist(), counts.tolist(), strict=True))), len(values)


@dataclasses.dataclass(frozen=True)
class TensorEntropy:
    """How one weight tensor is coded (see the module docstring).

    Attributes:
        layer, weight: the layer name and the weight's name.
        size, nonzero: elements and nonzero elements.
        encoding: ``raw``, ``dense`` or ``sparse`` (the cheapest, unless forced).
        values: distinct value symbols coded.
        lossless: False when the values were rounded to the level grid.
        value_bits: Huffman-coded value stream (fillers included), or 32 per element when raw.
        index_bits: Huffman-coded index-gap stream (sparse only).
        index_width: gap width ``b`` in bits (sparse only, else 0).
        fillers: filler entries inserted for gaps longer than 2**b.
        codebook_bytes: value table + Huffman tables + header.
        total_bytes: ``ceil((value_bits + index_bits) / 8) + codebook_bytes``.
        float32_bytes: ``4 * size``.
    """

    layer: str
    weight: str
    size: int
    nonzero: int
    encoding: str
    values: int
    lossless: bool
    value_bits: int
    index_bits: int
    index_width: int
    fillers: int
    codebook_bytes: int
    total_bytes: int
    float32_bytes: int

    @property
    def ratio(self) -> float:
        """float32 bytes / coded bytes."""
        return self.float32_bytes / self.total_bytes


@dataclasses.dataclass(frozen=True)
class EntropyReport:
    """The entropy-coded size of a model, per tensor and in total.

    Attributes:
        tensors: one :class:`TensorEntropy` per float weight tensor.
        float32_bytes: 4 bytes per parameter (the uncompressed reference).
        value_bits, index_bits, codebook_bytes, total_bytes: sums over the tensors.
        lossless: every tensor coded without rounding.
    """

    tensors: tuple
    float32_bytes: int
    value_bits: int
    index_bits: int
    codebook_bytes: int
    total_bytes: int
    lossless: bool

    @property
    def ratio(self) -> float:
        """Compression by the Deep Compression accounting: float32 bytes / entropy-coded bytes."""
        return self.float32_bytes / self.total_bytes

    def by_layer(self) -> dict:
        """Per layer: ``{name: {float32_bytes, value_bits, index_bits, codebook_bytes, total_bytes, ratio}}``."""
        out: dict = {}
        for t in self.tensors:
            row = out.setdefault(t.layer, dict.fromkeys(
                ("float32_bytes", "value_bits", "index_bits", "codebook_bytes", "total_bytes"), 0))
            for key in row:
                row[key] += getattr(t, key)
        for row in out.values():
            row["ratio"] = row["float32_bytes"] / row["total_bytes"]
        return out

    def as_dict(self) -> dict:
        """Totals as a flat dict (``entropy_bytes``, ``entropy_ratio``, ...) for result records."""
        return {"float32_bytes": self.float32_bytes, "entropy_bytes": self.total_bytes,
                "entropy_ratio": self.ratio, "entropy_value_bits": self.value_bits,
                "entropy_index_bits": self.index_bits, "entropy_codebook_bytes": self.codebook_bytes,
                "entropy_lossless": self.lossless}


def _symbols(values: np.ndarray, levels: int):
    """(rounded values, number of value-table bytes, lossless) under the documented rule."""
    distinct = np.unique(values)
    if len(distinct) <= levels:
        return values, 4 * len(distinct), True
    nonzero = values[values != 0]
    lo, hi = float(nonzero.min()), float(nonzero.max())
    step = (hi - lo) / (levels - 1)
    rounded = np.where(values == 0, 0.0, lo + np.round((values - lo) / step) * step).astype(values.dtype)
    return rounded, 8, False


def _table_bytes(*alphabets: int) -> int:
    return math.ceil(sum(alphabets) * _TABLE_BITS_PER_SYMBOL / 8)


def _sparse_streams(flat: np.ndarray, width: int):
    """(value symbols, gap symbols, fillers) of the relative-index encoding with ``width``-bit gaps."""
    positions = np.flatnonzero(flat)
    span = 1 << width
    gaps = np.diff(np.concatenate([[-1], positions]))
    # A gap g > span needs ceil(g / span) - 1 fillers, each advancing span positions.
    extra = (gaps - 1) // span
    fillers = int(extra.sum())
    real = np.cumsum(extra + 1) - 1  # where each nonzero lands after its fillers
    value_syms = np.zeros(len(positions) + fillers, flat.dtype)
    gap_syms = np.full(len(positions) + fillers, span - 1, np.int64)
    value_syms[real] = flat[positions]
    gap_syms[real] = gaps - extra * span - 1
    return value_syms, gap_syms, fillers


def _code_tensor(layer_name, weight_name, values, levels, encoding, index_bits) -> TensorEntropy:
    flat = np.asarray(values, np.float32).ravel()
    size, nonzero = flat.size, int(np.count_nonzero(flat))
    rounded, table, lossless = _symbols(flat, levels)
    candidates = []
    if encoding in (None, "raw"):
        candidates.append(dict(encoding="raw", values=len(np.unique(flat)), lossless=True, value_bits=32 * size,
                               index_bits=0, index_width=0, fillers=0, codebook_bytes=_HEADER_BYTES))
    if encoding in (None, "dense"):
        bits, alphabet = huffman_bits(rounded)
        candidates.append(dict(encoding="dense", values=alphabet, lossless=lossless, value_bits=bits, index_bits=0,
                               index_width=0, fillers=0,
                               codebook_bytes=table + _table_bytes(alphabet) + _HEADER_BYTES))
    if encoding in (None, "sparse") and nonzero:
        widths = range(1, 17) if index_bits is None else (index_bits,)
        for width in widths:
            value_syms, gap_syms, fillers = _sparse_streams(rounded, width)
            vbits, valpha = huffman_bits(value_syms)
            ibits, ialpha = huffman_bits(gap_syms)
            candidates.append(dict(encoding="sparse", values=valpha, lossless=lossless, value_bits=vbits,
                                   index_bits=ibits, index_width=width, fillers=fillers,
                                   codebook_bytes=table + _table_bytes(valpha, 1 << width) + _HEADER_BYTES))
    if not candidates:  # sparse forced on an all-zero tensor: nothing but the header
        candidates.append(dict(encoding="sparse", values=0, lossless=True, value_bits=0, index_bits=0,
                               index_width=index_bits or 1, fillers=0, codebook_bytes=_HEADER_BYTES))
    for c in candidates:
        c["total_bytes"] = math.ceil((c["value_bits"] + c["index_bits"]) / 8) + c["codebook_bytes"]
    best = min(candidates, key=lambda c: c["total_bytes"])
    return TensorEntropy(layer=layer_name, weight=weight_name, size=size, nonzero=nonzero,
                         float32_bytes=4 * size, **best)


def _float_weights(model):
    """(layer name, weight name, variable) of every float weight, refusing training wrappers."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _float_weights(layer)
            continue
        if isinstance(getattr(layer, "layer", None), keras.layers.Layer):
            raise ValueError(
                f"model holds the training wrapper {type(layer).__name__} around {layer.layer.name!r}; strip it first "
                "(kcompress.pruning.strip / kcompress.clustering.strip)."
            )
        for w in layer.weights:
            if w.dtype.is_floating:
                yield layer.name, w.name, w


def _check(model, levels, index_bits, encoding):
    model = check_model(model)
    check_int("levels", levels, 2, 65536)
    check_int("index_bits", index_bits, 1, 16, allow_none=True)  # None: the best per tensor
    if encoding is not None:  # None: the cheapest per tensor
        check_choice("encoding", encoding, ENCODINGS)
    return model


def entropy_coded_size(model, levels: int = 256, index_bits: int | None = None,
                       encoding: str | None = None) -> EntropyReport:
    """Bytes a Huffman code of ``model``'s shared weights and sparse indices takes (Deep Compression).

    Args:
        model: any tf_keras model (strip pruning/clustering wrappers first).
        levels: tensors with at most this many distinct values are coded as they
            are; others are rounded to this many evenly spaced levels (lossy).
        index_bits: width of the sparse index gaps; None tries 1..16 per tensor and
            keeps the cheapest (the paper used 5 for FC and 8 for conv layers).
        encoding: force ``raw``, ``dense`` or ``sparse`` for every tensor; None
            picks the cheapest per tensor.

    Returns:
        An :class:`EntropyReport` (``.total_bytes``, ``.ratio``, ``.tensors``, ``.by_layer()``).

    Raises:
        TypeError: not a tf_keras model.
        ValueError: bad ``levels`` / ``index_bits`` / ``encoding``, or a model still
            holding pruning or clustering wrappers.

    Example:
        >>> r = entropy_coded_size(kc.clustering.strip(clustered))
        >>> r.float32_bytes, r.total_bytes, r.ratio
    """
    model = _check(model, levels, index_bits, encoding)
    tensors = tuple(_code_tensor(lname, wname, w.numpy(), int(levels), encoding, index_bits)
                    for lname, wname, w in _float_weights(model))
    if not tensors:
        raise ValueError(f"model {model.name!r} has no float weights to code.")
    return EntropyReport(
        tensors=tensors,
        float32_bytes=sum(t.float32_bytes for t in tensors),
        value_bits=sum(t.value_bits for t in tensors),
        index_bits=sum(t.index_bits for t in tensors),
        codebook_bytes=sum(t.codebook_bytes for t in tensors),
        total_bytes=sum(t.total_bytes for t in tensors),
        lossless=all(t.lossless for t in tensors),
    )


def quantize_levels(model, levels: int = 256):
    """A copy of ``model`` with every weight as :func:`entropy_coded_size` codes it.

    Tensors coded losslessly (at most ``levels`` distinct values, or stored raw)
    are unchanged; the others are rounded to the level grid, so the copy's
    accuracy is that of the model :func:`entropy_coded_size` counts.

    Example:
        >>> kc.evaluation.evaluate(quantize_levels(model), ds)["accuracy"]
    """
    report = entropy_coded_size(model, levels=levels)
    lossy = {(t.layer, t.weight) for t in report.tensors if not t.lossless}
    copy = copy_model(model)
    for lname, wname, w in _float_weights(copy):
        if (lname, wname) in lossy:
            values = w.numpy()
            w.assign(_symbols(values.ravel(), int(levels))[0].reshape(values.shape))
    return copy
